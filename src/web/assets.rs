//! The web pages' templates (`templates/`) and static files (`static/`): built into the
//! binary, or, with `server.dev_assets_dir`, read from disk on every request so edits show on
//! reload.

use std::borrow::Cow;
use std::path::PathBuf;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::Embed;
use sha2::{Digest, Sha256};

#[derive(Embed)]
#[folder = "templates/"]
struct BuiltInTemplates;

#[derive(Embed)]
#[folder = "static/"]
struct BuiltInStatic;

/// The pages' templates and static files, and the settings every page shows (the maintenance
/// banner).
pub struct Assets {
    source: Source,
    settings: Option<crate::settings::Settings>,
}

/// Where the pages come from.
enum Source {
    /// The copies built into the binary, templates parsed once.
    BuiltIn(Box<tera::Tera>),
    /// A checkout's `templates/` and `static/`, read on every request (development).
    Disk(PathBuf),
}

impl Assets {
    pub fn new(dev_dir: Option<PathBuf>) -> Result<Assets, tera::Error> {
        let source = match dev_dir {
            Some(dir) => Source::Disk(dir),
            None => Source::BuiltIn(Box::new(built_in_tera()?)),
        };
        Ok(Assets {
            source,
            settings: None,
        })
    }

    /// Pages show these settings' banner and read-only notice.
    pub fn with_settings(self, settings: crate::settings::Settings) -> Assets {
        Assets {
            settings: Some(settings),
            ..self
        }
    }

    /// Renders a template; HTML is escaped unless a template marks a value `safe`.
    pub fn render(&self, name: &str, context: &tera::Context) -> Result<String, tera::Error> {
        let mut context = context.clone();
        if let Some(settings) = &self.settings {
            let values = settings.get();
            context.insert("banner", &values.banner);
            context.insert("read_only", &values.read_only);
        }
        match &self.source {
            Source::BuiltIn(tera) => tera.render(name, &context),
            Source::Disk(dir) => {
                let glob = format!("{}/templates/**/*.html", dir.display());
                tera::Tera::new(&glob)?.render(name, &context)
            }
        }
    }

    /// A static file and its entity tag.
    fn file(&self, path: &str) -> Option<(Cow<'static, [u8]>, String)> {
        match &self.source {
            Source::BuiltIn(_) => BuiltInStatic::get(path)
                .map(|f| (f.data, hex::encode(&f.metadata.sha256_hash()[..12]))),
            Source::Disk(dir) => {
                // Only plain relative names: no way out of the static folder.
                if path
                    .split('/')
                    .any(|part| part.is_empty() || part.starts_with('.'))
                {
                    return None;
                }
                let data = std::fs::read(dir.join("static").join(path)).ok()?;
                let tag = hex::encode(&Sha256::digest(&data)[..12]);
                Some((Cow::Owned(data), tag))
            }
        }
    }
}

fn built_in_tera() -> Result<tera::Tera, tera::Error> {
    let mut tera = tera::Tera::default();
    let mut sources = Vec::new();
    for name in BuiltInTemplates::iter() {
        if let Some(file) = BuiltInTemplates::get(&name) {
            let text = String::from_utf8_lossy(&file.data).into_owned();
            sources.push((name.into_owned(), text));
        }
    }
    tera.add_raw_templates(sources)?;
    Ok(tera)
}

fn media_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /static/{path}`: revalidated by entity tag, so a new release shows at once.
pub async fn serve_static(
    req: HttpRequest,
    assets: web::Data<Assets>,
    path: web::Path<String>,
) -> HttpResponse {
    let Some((data, tag)) = assets.file(&path) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such file");
    };
    let etag = format!("\"{tag}\"");
    let cached = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if cached {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if cached {
        return response.finish();
    }
    response.content_type(media_type(&path)).body(data)
}
