DROP TABLE stats_users;
DROP TABLE stats_durations;
DROP TABLE stats_hours;
DROP TABLE stats_units;
