-- Undoes V2__products.sql: the products table goes, with every row in it.
DROP TABLE products;
