//! What a user types into the search box, parsed once into a [`Query`] that each backend writes
//! in its own syntax. The language is a small, forgiving subset of what web search engines take:
//!
//! - `word` must appear; several words must all appear, anywhere on the page;
//! - `"a phrase"` must appear as written, word after word (an unclosed quote runs to the end);
//! - `prefix*` matches any word that starts so (at least two letters before the star);
//! - `-word` or `-"a phrase"` must not appear;
//! - `OR`, in capitals, between two sets of the above: a page that matches either.
//!
//! Nothing a user types is an error except an empty search, one with only exclusions, or one
//! too long: punctuation alone is ignored, stray quotes and stars are plain characters. No text
//! from the query ever reaches SQL except as a bound value, and the backends' own query
//! languages only ever see words that are quoted ([`Query::fts5`]) or built by the database
//! from plain text ([`Query::tsquery_parts`]).

/// The longest query taken, in characters.
pub const MAX_CHARS: usize = 256;
/// The most words and phrases in one query.
pub const MAX_TERMS: usize = 16;
/// A prefix shorter than this is searched as a whole word: one letter would match most pages.
pub const MIN_PREFIX: usize = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    /// A word as typed (punctuation inside is the backend tokenizer's to split).
    Word(String),
    /// Letters and digits only, matched as the start of a word.
    Prefix(String),
    /// Words in this order.
    Phrase(String),
}

/// Pages matching all of `include` and none of `exclude`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub include: Vec<Term>,
    pub exclude: Vec<Term>,
}

/// Pages matching any of the groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub groups: Vec<Group>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("Type a word to search for.")]
    Empty,
    #[error("A search needs a word to find, not only words to leave out.")]
    OnlyExclusions,
    #[error("The search is too long: at most {MAX_CHARS} characters.")]
    TooLong,
    #[error("The search has too many words: at most {MAX_TERMS} words and phrases.")]
    TooManyTerms,
}

/// `text` as an FTS5 string: double-quoted, its quotes doubled; whatever it holds is words.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// A word worth searching for: it has a letter or a digit.
fn searchable(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// One piece of the query as typed, before grouping.
enum Token {
    Or,
    Term { term: Term, negated: bool },
}

fn tokens(input: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return out;
        };
        let negated = first == '-';
        if negated {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            let phrase: String = chars.by_ref().take_while(|&c| c != '"').collect();
            if searchable(&phrase) {
                let term = Term::Phrase(phrase.split_whitespace().collect::<Vec<_>>().join(" "));
                out.push(Token::Term { term, negated });
            }
            continue;
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            word.push(c);
        }
        if word == "OR" && !negated {
            out.push(Token::Or);
            continue;
        }
        if !searchable(&word) {
            continue;
        }
        let stem = word.strip_suffix('*').unwrap_or(&word);
        let term = if stem.len() < word.len()
            && stem.chars().all(char::is_alphanumeric)
            && stem.chars().count() >= MIN_PREFIX
        {
            Term::Prefix(stem.to_lowercase())
        } else {
            Term::Word(word)
        };
        out.push(Token::Term { term, negated });
    }
}

impl Query {
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        if input.chars().count() > MAX_CHARS {
            return Err(QueryError::TooLong);
        }
        // Control characters (a NUL above all, which PostgreSQL text cannot hold) separate
        // words like spaces.
        let input: String = input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut groups = vec![Group::default()];
        let mut terms = 0;
        for token in tokens(&input) {
            match token {
                Token::Or => groups.push(Group::default()),
                Token::Term { term, negated } => {
                    terms += 1;
                    let group = groups.last_mut().expect("there is always a group");
                    if negated {
                        group.exclude.push(term);
                    } else {
                        group.include.push(term);
                    }
                }
            }
        }
        if terms > MAX_TERMS {
            return Err(QueryError::TooManyTerms);
        }
        // `a OR OR b`, a leading or trailing OR: empty groups say nothing.
        groups.retain(|g| !g.include.is_empty() || !g.exclude.is_empty());
        if groups.is_empty() {
            return Err(QueryError::Empty);
        }
        if groups.iter().any(|g| g.include.is_empty()) {
            return Err(QueryError::OnlyExclusions);
        }
        Ok(Query { groups })
    }

    /// The words to mark on a page, lower-cased, from the terms that must appear: a prefix keeps
    /// its star (`invo*`). Punctuation splits words, as the tokenizers do.
    pub fn highlight_terms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for group in &self.groups {
            for term in &group.include {
                let words: Vec<String> = match term {
                    Term::Prefix(stem) => vec![format!("{stem}*")],
                    Term::Word(text) | Term::Phrase(text) => text
                        .split(|c: char| !c.is_alphanumeric())
                        .filter(|w| !w.is_empty())
                        .map(str::to_lowercase)
                        .collect(),
                };
                for word in words {
                    if !out.contains(&word) {
                        out.push(word);
                    }
                }
            }
        }
        out
    }

    /// The query in FTS5's syntax. Every word and phrase is a double-quoted string (quotes
    /// doubled), so nothing typed can be read as an FTS5 operator or column filter.
    pub fn fts5(&self) -> String {
        fn term(t: &Term) -> String {
            match t {
                Term::Word(text) | Term::Phrase(text) => quoted(text),
                Term::Prefix(stem) => format!("{}*", quoted(stem)),
            }
        }
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                let include: Vec<String> = g.include.iter().map(term).collect();
                let include = format!("({})", include.join(" AND "));
                if g.exclude.is_empty() {
                    include
                } else {
                    let exclude: Vec<String> = g.exclude.iter().map(term).collect();
                    format!("({include} NOT ({}))", exclude.join(" OR "))
                }
            })
            .collect();
        groups.join(" OR ")
    }

    /// The query as a PostgreSQL expression of type `tsquery`, with a `?` for each value in the
    /// returned list. The database builds each term from plain text with its own parser
    /// (`plainto_tsquery`, `phraseto_tsquery`); a prefix, letters and digits only, is the one
    /// value written in tsquery syntax.
    pub fn tsquery_parts(&self) -> (String, Vec<String>) {
        let mut values = Vec::new();
        let mut term = |t: &Term| match t {
            Term::Word(text) => {
                values.push(text.clone());
                "plainto_tsquery('simple', ?)"
            }
            Term::Phrase(text) => {
                values.push(text.clone());
                "phraseto_tsquery('simple', ?)"
            }
            Term::Prefix(stem) => {
                values.push(format!("{stem}:*"));
                "to_tsquery('simple', ?)"
            }
        };
        let mut groups = Vec::new();
        for g in &self.groups {
            let mut parts: Vec<String> = g.include.iter().map(|t| term(t).to_owned()).collect();
            parts.extend(g.exclude.iter().map(|t| format!("!!{}", term(t))));
            groups.push(format!("({})", parts.join(" && ")));
        }
        (groups.join(" || "), values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Query {
        Query::parse(s).unwrap()
    }

    #[test]
    fn words_phrases_prefixes_exclusions_and_or() {
        let q = parse(r#"invoice "net total" acm* -draft OR receipt"#);
        assert_eq!(
            q.groups,
            vec![
                Group {
                    include: vec![
                        Term::Word("invoice".into()),
                        Term::Phrase("net total".into()),
                        Term::Prefix("acm".into()),
                    ],
                    exclude: vec![Term::Word("draft".into())],
                },
                Group {
                    include: vec![Term::Word("receipt".into())],
                    exclude: vec![],
                },
            ]
        );
        assert_eq!(
            q.fts5(),
            r#"(("invoice" AND "net total" AND "acm"*) NOT ("draft")) OR ("receipt")"#
        );
        let (sql, values) = q.tsquery_parts();
        assert_eq!(
            sql,
            "(plainto_tsquery('simple', ?) && phraseto_tsquery('simple', ?) && \
             to_tsquery('simple', ?) && !!plainto_tsquery('simple', ?)) || (plainto_tsquery('simple', ?))"
        );
        assert_eq!(
            values,
            ["invoice", "net total", "acm:*", "draft", "receipt"]
        );
        assert_eq!(
            q.highlight_terms(),
            ["invoice", "net", "total", "acm*", "receipt"]
        );
    }

    #[test]
    fn hostile_and_odd_input_is_quoted_ignored_or_refused() {
        // FTS5 operators, column filters and quotes are only ever text inside a string.
        let q = parse(r#"body:x NEAR(a b) "un"closed" a"b ^c"#);
        let fts = q.fts5();
        assert!(
            fts.starts_with(r#"("body:x" AND "NEAR(a" AND "b)" AND "un" AND "closed""#),
            "{fts}"
        );
        assert!(fts.contains(r#""a""b""#), "{fts}");
        // An unclosed quote runs to the end.
        assert_eq!(
            parse(r#"say "hello world"#).groups[0].include[1],
            Term::Phrase("hello world".into())
        );
        // Punctuation alone is nothing; a lone star or a one-letter prefix is a plain word.
        assert_eq!(
            parse("... invoice *** !!").groups[0].include,
            vec![Term::Word("invoice".into())]
        );
        assert_eq!(parse("a*").groups[0].include, vec![Term::Word("a*".into())]);
        assert_eq!(
            parse("in*voice").groups[0].include,
            vec![Term::Word("in*voice".into())]
        );
        // `or` in lower case is a word; a dangling OR is ignored.
        assert_eq!(parse("this or that").groups.len(), 1);
        assert_eq!(parse("OR invoice OR OR").groups.len(), 1);
        for (input, error) in [
            ("", QueryError::Empty),
            ("   \t ", QueryError::Empty),
            ("\"\" ... OR", QueryError::Empty),
            ("-draft", QueryError::OnlyExclusions),
            ("invoice OR -draft", QueryError::OnlyExclusions),
        ] {
            assert_eq!(Query::parse(input), Err(error), "{input:?}");
        }
        assert_eq!(
            parse("in\u{0}voice\u{1b}").groups[0].include,
            vec![Term::Word("in".into()), Term::Word("voice".into())]
        );
        assert_eq!(
            Query::parse(&"a".repeat(MAX_CHARS + 1)),
            Err(QueryError::TooLong)
        );
        assert!(
            Query::parse(&"é".repeat(MAX_CHARS)).is_ok(),
            "characters, not bytes"
        );
        let many = vec!["w"; MAX_TERMS + 1].join(" ");
        assert_eq!(Query::parse(&many), Err(QueryError::TooManyTerms));
        // Prefixes are lower-cased: the indexes hold lower-case words.
        assert_eq!(
            parse("INVO*").groups[0].include,
            vec![Term::Prefix("invo".into())]
        );
        assert_eq!(
            parse("12.5*").groups[0].include,
            vec![Term::Word("12.5*".into())]
        );
    }
}
