DROP TABLE search_pages;
