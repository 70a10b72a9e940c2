//! Search on SQLite: the FTS5 table `search_fts`, whose content is `search_pages`.

use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use super::query::quoted;
use super::{HitRow, Query, RANKED, Scope, SizeRow};
use crate::db::SqliteConn;

pub(super) async fn search(
    c: &mut SqliteConn,
    scope: Scope<'_>,
    query: &Query,
    limit: i64,
    offset: i64,
) -> diesel::QueryResult<Vec<HitRow>> {
    // The words are looked for in the text alone; a user's search also names its owner to
    // FTS5, so that only their pages' entries are read. The join on tasks below is what
    // decides whose pages are shown.
    let fts = match scope {
        Scope::Owner(user) => format!("owner : {} AND body : ({})", quoted(user), query.fts5()),
        Scope::All => format!("body : ({})", query.fts5()),
    };
    let owner = match scope {
        Scope::Owner(_) => "AND t.user_id = ?",
        Scope::All => "",
    };
    // snippet() works only in a query that matches: the page of hits is matched again, by
    // rowid, to make theirs.
    let sql = format!(
        "WITH candidates AS ( \
             SELECT search_fts.rowid AS id, bm25(search_fts, 1.0, 0.0) AS rank \
             FROM search_fts JOIN search_pages sp ON sp.id = search_fts.rowid \
                  JOIN tasks t ON t.id = sp.task_id \
             WHERE search_fts MATCH ? {owner} \
             ORDER BY search_fts.rowid DESC LIMIT {RANKED} \
         ), ranked AS ( \
             SELECT id, rank FROM candidates ORDER BY rank, id DESC LIMIT ? OFFSET ? \
         ) \
         SELECT sp.task_id, t.user_id, f.filename, sp.page, t.created_at, \
                snippet(search_fts, 0, char(1), char(2), ' … ', 16) AS snippet \
         FROM ranked r JOIN search_fts ON search_fts.rowid = r.id \
              JOIN search_pages sp ON sp.id = r.id \
              JOIN tasks t ON t.id = sp.task_id JOIN files f ON f.id = t.file_id \
         WHERE search_fts MATCH ? \
         ORDER BY r.rank, r.id DESC"
    );
    let statement = diesel::sql_query(sql).bind::<Text, _>(fts.clone());
    match scope {
        Scope::Owner(user) => {
            statement
                .bind::<Text, _>(user)
                .bind::<BigInt, _>(limit)
                .bind::<BigInt, _>(offset)
                .bind::<Text, _>(fts)
                .load(c)
                .await
        }
        Scope::All => {
            statement
                .bind::<BigInt, _>(limit)
                .bind::<BigInt, _>(offset)
                .bind::<Text, _>(fts)
                .load(c)
                .await
        }
    }
}

pub(super) async fn size(c: &mut SqliteConn) -> diesel::QueryResult<SizeRow> {
    // The index is FTS5's shadow tables; the body is the text itself.
    diesel::sql_query(
        "SELECT (SELECT count(*) FROM search_pages) AS pages, \
                (SELECT coalesce(sum(length(CAST(body AS BLOB))), 0) FROM search_pages) AS text_bytes, \
                (SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE 'search\\_fts\\_%' ESCAPE '\\') \
                    AS index_bytes",
    )
    .get_result(c)
    .await
}
