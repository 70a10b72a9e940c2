DROP TRIGGER search_pages_update;
DROP TRIGGER search_pages_delete;
DROP TRIGGER search_pages_insert;
DROP TABLE search_fts;
DROP TABLE search_pages;
