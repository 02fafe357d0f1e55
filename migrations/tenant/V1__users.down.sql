-- Undoes V1__users.sql: the users table goes, with every row in it.
DROP TABLE users;
