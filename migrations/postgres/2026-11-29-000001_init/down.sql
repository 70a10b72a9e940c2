DROP TABLE results;
DROP TABLE tasks;
DROP TABLE files;
DROP TABLE api_tokens;
DROP TABLE users;
