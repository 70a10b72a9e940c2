//! Search on PostgreSQL: `search_pages.tsv` (a generated `tsvector`, 'simple' configuration)
//! and its GIN index.

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{HitRow, Query, RANKED, Scope, SizeRow};

/// `ts_headline`'s options: the matches between the snippet markers, two fragments at most.
const HEADLINE: &str = "StartSel=\u{1}, StopSel=\u{2}, MaxWords=24, MinWords=10, ShortWord=1, \
     MaxFragments=2, FragmentDelimiter=\" … \"";

#[derive(diesel::QueryableByName)]
struct Normalized {
    #[diesel(sql_type = Text)]
    query: String,
}

/// The query as tsquery text, made by the database's own parser from the terms: a constant
/// for the search itself, so the planner sees the words and can judge how common they are.
async fn tsquery(c: &mut AsyncPgConnection, query: &Query) -> diesel::QueryResult<String> {
    let (expression, values) = query.tsquery_parts();
    let sql = crate::db::numbered_placeholders(&format!("SELECT ({expression})::text AS query"));
    let mut statement = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
    for value in values {
        statement = statement.bind::<Text, _>(value);
    }
    let rows: Vec<Normalized> = statement.load(c).await?;
    Ok(rows.into_iter().next().map(|r| r.query).unwrap_or_default())
}

pub(super) async fn search(
    c: &mut AsyncPgConnection,
    scope: Scope<'_>,
    query: &Query,
    limit: i64,
    offset: i64,
) -> diesel::QueryResult<Vec<HitRow>> {
    let tsquery = tsquery(c, query).await?;
    // Words the parser drops entirely (punctuation it does not index) leave nothing to find.
    if tsquery.trim().is_empty() {
        return Ok(Vec::new());
    }
    let owner = match scope {
        Scope::Owner(_) => "AND t.user_id = $5",
        Scope::All => "",
    };
    let sql = format!(
        "WITH candidates AS ( \
             SELECT sp.id, sp.tsv FROM search_pages sp JOIN tasks t ON t.id = sp.task_id \
             WHERE sp.tsv @@ $1::tsquery {owner} \
             ORDER BY sp.id DESC LIMIT {RANKED} \
         ), ranked AS ( \
             SELECT id, ts_rank_cd(tsv, $1::tsquery) AS rank FROM candidates \
             ORDER BY rank DESC, id DESC LIMIT $2 OFFSET $3 \
         ) \
         SELECT sp.task_id, t.user_id, f.filename, sp.page, t.created_at, \
                ts_headline('simple', sp.body, $1::tsquery, $4) AS snippet \
         FROM ranked r JOIN search_pages sp ON sp.id = r.id \
              JOIN tasks t ON t.id = sp.task_id JOIN files f ON f.id = t.file_id \
         ORDER BY r.rank DESC, r.id DESC"
    );
    let statement = diesel::sql_query(sql)
        .bind::<Text, _>(tsquery)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(offset)
        .bind::<Text, _>(HEADLINE);
    match scope {
        Scope::Owner(user) => statement.bind::<Text, _>(user).load(c).await,
        Scope::All => statement.load(c).await,
    }
}

pub(super) async fn size(c: &mut AsyncPgConnection) -> diesel::QueryResult<SizeRow> {
    // The index is the tsvector column and its GIN index; the body is the text itself.
    diesel::sql_query(
        "SELECT count(*)::bigint AS pages, \
                coalesce(sum(octet_length(body)), 0)::bigint AS text_bytes, \
                (coalesce(sum(pg_column_size(tsv)), 0) \
                 + pg_relation_size('search_pages_tsv_idx'))::bigint AS index_bytes \
         FROM search_pages",
    )
    .get_result(c)
    .await
}
