-- Undoes V3__orders.sql (MySQL/MariaDB): order lines first, as they point at
-- orders; the index goes with its table.
DROP TABLE order_items;
DROP TABLE orders;
