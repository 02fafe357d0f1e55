-- Undoes V2__products.sql (PostgreSQL): the products table goes, with every row in it.
DROP TABLE products;
