-- Undoes V2__products.sql (MySQL/MariaDB): the products table goes, with every row in it.
DROP TABLE products;
