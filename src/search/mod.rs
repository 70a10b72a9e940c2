//! The search port: full-text search over OCR results, by the database itself.
//!
//! Each page of a result is one row of `search_pages`, written in the same transaction as the
//! result ([`page_rows`], used by `Task::complete`), and gone with its task (the foreign key
//! cascades). Two adapters index it behind one [`Query`]:
//! - PostgreSQL: a generated `tsvector` column with a GIN index, ranked by `ts_rank_cd`, with
//!   snippets from `ts_headline` ([`postgres`]);
//! - SQLite: an external-content FTS5 table kept by triggers, ranked by `bm25`, with
//!   snippets from `snippet()` ([`sqlite`]).
//!
//! **Scoping is a join.** A user's search joins `tasks` on its owner, so what search shows
//! can never drift from who owns what; only admins search everyone's ([`Scope::All`]).
//!
//! **Bounded work per query.** The newest [`RANKED`] matching pages are ranked, not every
//! match: a word on most pages costs the same as a rare one. A search that matches more
//! shows the best of the newest, and can be narrowed with more words.

pub mod query;

mod postgres;
mod sqlite;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamp};
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures::FutureExt;
use serde::Serialize;

use crate::db::schema::{results, search_pages};
use crate::db::{DbConn, DbError, DbPool};
use crate::with_conn;
pub use query::{Query, QueryError};

/// How many of the newest matching pages are ranked; also the deepest a search pages.
pub const RANKED: i64 = 1000;
/// A page's text is indexed up to this many characters (a PDF's text layer can hold anything).
pub const MAX_PAGE_CHARS: usize = 200_000;

/// Whose pages a search reads.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    Owner(&'a str),
    All,
}

impl<'a> Scope<'a> {
    /// One account's pages, or with `None` everyone's.
    pub fn of(owner: Option<&'a str>) -> Scope<'a> {
        owner.map_or(Scope::All, Scope::Owner)
    }
}

/// One page of `search_pages`.
#[derive(Clone, Debug, PartialEq, Eq, Insertable)]
#[diesel(table_name = search_pages)]
pub struct PageRow {
    pub task_id: String,
    /// The task's owner, for SQLite's index to narrow by; searches still join `tasks`.
    pub owner: String,
    pub page: i32,
    pub body: String,
}

/// A result's text (its pages separated by form feeds, as `results.text` holds it) as the rows
/// to index: pages numbered from 1, control characters as spaces (the snippets' markers are
/// control characters), each cut at [`MAX_PAGE_CHARS`], blank pages left out.
pub fn page_rows(task_id: &str, owner: &str, text: &str) -> Vec<PageRow> {
    text.split('\u{c}')
        .enumerate()
        .filter(|(_, page)| !page.trim().is_empty())
        .map(|(i, page)| PageRow {
            task_id: task_id.to_owned(),
            owner: owner.to_owned(),
            page: i as i32 + 1,
            body: page
                .chars()
                .take(MAX_PAGE_CHARS)
                .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
                .collect(),
        })
        .collect()
}

/// A piece of a snippet: words that matched are marked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Segment {
    pub text: String,
    /// Whether these words matched the search.
    #[serde(rename = "match")]
    pub matched: bool,
}

/// One matching page.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub task_id: String,
    /// The task's owner.
    pub user_id: String,
    pub filename: String,
    /// The page, from 1.
    pub page: i32,
    /// When the task was uploaded.
    #[serde(with = "crate::db::models::utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub task_created_at: NaiveDateTime,
    /// Words around the matches on this page.
    pub snippet: Vec<Segment>,
}

/// The markers the adapters put around matched words in a snippet.
const START: char = '\u{1}';
const STOP: char = '\u{2}';

/// A snippet with [`START`]…[`STOP`] around its matches, as segments.
fn segments(marked: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = marked;
    while !rest.is_empty() {
        let (text, matched, next) = match rest.strip_prefix(START) {
            Some(inner) => {
                let end = inner.find(STOP).unwrap_or(inner.len());
                (
                    &inner[..end],
                    true,
                    inner[end..].strip_prefix(STOP).unwrap_or(""),
                )
            }
            None => {
                let end = rest.find(START).unwrap_or(rest.len());
                (&rest[..end], false, &rest[end..])
            }
        };
        let text = text.replace(STOP, "");
        if !text.is_empty() {
            out.push(Segment { text, matched });
        }
        rest = next;
    }
    out
}

/// A hit as the adapters' SQL returns it.
#[derive(QueryableByName)]
struct HitRow {
    #[diesel(sql_type = Text)]
    task_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    filename: String,
    #[diesel(sql_type = Integer)]
    page: i32,
    #[diesel(sql_type = Timestamp)]
    created_at: NaiveDateTime,
    #[diesel(sql_type = Text)]
    snippet: String,
}

impl From<HitRow> for Hit {
    fn from(row: HitRow) -> Hit {
        Hit {
            task_id: row.task_id,
            user_id: row.user_id,
            filename: row.filename,
            page: row.page,
            task_created_at: row.created_at,
            snippet: segments(&row.snippet),
        }
    }
}

/// Up to `limit` hits from `offset`, best first, among the newest [`RANKED`] matches in
/// `scope`. An offset at or past [`RANKED`] finds nothing.
pub async fn search(
    conn: &mut DbConn,
    scope: Scope<'_>,
    query: &Query,
    limit: i64,
    offset: i64,
) -> Result<Vec<Hit>, DbError> {
    let limit = limit.min(RANKED - offset);
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let rows = match conn {
        DbConn::Postgres(c) => postgres::search(c, scope, query, limit, offset).await?,
        DbConn::Sqlite(c) => sqlite::search(c, scope, query, limit, offset).await?,
    };
    Ok(rows.into_iter().map(Hit::from).collect())
}

/// What [`reindex`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reindexed {
    pub tasks: u64,
    pub pages: u64,
}

/// Results read per transaction while reindexing.
const REINDEX_BATCH: i64 = 200;

/// Rebuilds the index from the results: each result's rows are replaced by its pages as they
/// are written today, the rows of a batch of results in one transaction, so the index stays
/// usable meanwhile and a result completed during the run is indexed either way. `progress`
/// hears the running totals after each batch.
pub async fn reindex(
    db: &DbPool,
    progress: impl Fn(Reindexed) + Send,
) -> Result<Reindexed, DbError> {
    let mut done = Reindexed::default();
    let mut after = String::new();
    let mut raced = 0;
    loop {
        let from = after.clone();
        let outcome = db
            .run(move |c| async move { reindex_batch(c, &from).await }.boxed())
            .await;
        let (last, batch) = match outcome {
            // A task of the batch was deleted meanwhile: read the batch again, without it.
            Err(DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _,
            ))) if raced < 3 => {
                raced += 1;
                continue;
            }
            other => other?,
        };
        raced = 0;
        let Some(last) = last else { break };
        done.tasks += batch.tasks;
        done.pages += batch.pages;
        progress(done);
        after = last;
    }
    db.run(|c| {
        async move {
            if let DbConn::Sqlite(c) = c {
                // Merges the index's segments: smaller, and faster to read.
                diesel::sql_query("INSERT INTO search_fts (search_fts) VALUES ('optimize')")
                    .execute(&mut **c)
                    .await?;
            }
            Ok::<_, DbError>(())
        }
        .boxed()
    })
    .await?;
    Ok(done)
}

/// Reindexes the results after task id `after`: the last task id done, if any, and the counts.
async fn reindex_batch(
    conn: &mut DbConn,
    after: &str,
) -> Result<(Option<String>, Reindexed), DbError> {
    let batch: Vec<(String, String, String)> = with_conn!(conn, |c| results::table
        .filter(results::task_id.gt(after))
        .order(results::task_id)
        .select((results::task_id, results::user_id, results::text))
        .limit(REINDEX_BATCH)
        .load(c)
        .await)?;
    let ids: Vec<&str> = batch.iter().map(|(id, ..)| id.as_str()).collect();
    let rows: Vec<PageRow> = batch
        .iter()
        .flat_map(|(task_id, owner, text)| page_rows(task_id, owner, text))
        .collect();
    // Each result's rows replaced at once. PostgreSQL takes many rows per INSERT (a round trip
    // each is most of the time); diesel-async's SQLite connection takes one.
    match conn {
        DbConn::Postgres(c) => {
            c.transaction::<_, diesel::result::Error, _>(async |tx| {
                diesel::delete(search_pages::table.filter(search_pages::task_id.eq_any(&ids)))
                    .execute(tx)
                    .await?;
                for chunk in rows.chunks(500) {
                    diesel::insert_into(search_pages::table)
                        .values(chunk)
                        .execute(tx)
                        .await?;
                }
                Ok(())
            })
            .await?
        }
        DbConn::Sqlite(c) => {
            c.transaction::<_, diesel::result::Error, _>(async |tx| {
                diesel::delete(search_pages::table.filter(search_pages::task_id.eq_any(&ids)))
                    .execute(tx)
                    .await?;
                for row in &rows {
                    diesel::insert_into(search_pages::table)
                        .values(row)
                        .execute(tx)
                        .await?;
                }
                Ok(())
            })
            .await?
        }
    }
    let done = Reindexed {
        tasks: batch.len() as u64,
        pages: rows.len() as u64,
    };
    Ok((batch.last().map(|(id, ..)| id.clone()), done))
}

/// The index's size on disk and the text it holds, in bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Size {
    pub pages: i64,
    pub text_bytes: i64,
    pub index_bytes: i64,
}

#[derive(QueryableByName)]
struct SizeRow {
    #[diesel(sql_type = BigInt)]
    pages: i64,
    #[diesel(sql_type = BigInt)]
    text_bytes: i64,
    #[diesel(sql_type = BigInt)]
    index_bytes: i64,
}

/// How big the index is next to the text it indexes (`ocrd admin search stats`, the bench).
pub async fn size(conn: &mut DbConn) -> Result<Size, DbError> {
    let row: SizeRow = match conn {
        DbConn::Postgres(c) => postgres::size(c).await?,
        DbConn::Sqlite(c) => sqlite::size(c).await?,
    };
    Ok(Size {
        pages: row.pages,
        text_bytes: row.text_bytes,
        index_bytes: row.index_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_numbered_cleaned_cut_and_blank_ones_skipped() {
        let rows = page_rows("t", "u", "first\u{1}page\n\u{c} \n\u{c}third\tpage");
        assert_eq!(
            rows.iter()
                .map(|r| (r.page, r.body.as_str()))
                .collect::<Vec<_>>(),
            [(1, "first page\n"), (3, "third page")]
        );
        let long = "é".repeat(MAX_PAGE_CHARS + 10);
        assert_eq!(
            page_rows("t", "u", &long)[0].body.chars().count(),
            MAX_PAGE_CHARS
        );
        assert!(page_rows("t", "u", "").is_empty());
    }

    #[test]
    fn snippets_become_segments_even_when_markers_are_unbalanced() {
        let seg = |text: &str, matched| Segment {
            text: text.into(),
            matched,
        };
        assert_eq!(
            segments("the \u{1}net\u{2} \u{1}total\u{2} is"),
            [
                seg("the ", false),
                seg("net", true),
                seg(" ", false),
                seg("total", true),
                seg(" is", false)
            ]
        );
        assert_eq!(segments("\u{1}open"), [seg("open", true)]);
        assert_eq!(segments("stray\u{2} stop"), [seg("stray stop", false)]);
        assert!(segments("").is_empty());
    }
}
