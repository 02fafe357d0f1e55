-- Undoes V1__users.sql (PostgreSQL): the table goes, its unique email index with it.
DROP TABLE users;
