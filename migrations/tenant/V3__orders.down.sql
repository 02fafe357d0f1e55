-- Undoes V3__orders.sql: order lines first, as they point at orders.
DROP INDEX orders_user;
DROP TABLE order_items;
DROP TABLE orders;
