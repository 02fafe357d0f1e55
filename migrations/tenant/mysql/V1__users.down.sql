-- Undoes V1__users.sql (MySQL/MariaDB): the users table goes, with every row in it.
DROP TABLE users;
