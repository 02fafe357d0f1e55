-- Undoes V3__orders.sql (PostgreSQL): order lines first, as they point at orders.
DROP TABLE order_items;
DROP TABLE orders;
