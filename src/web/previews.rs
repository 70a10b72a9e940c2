//! Page images converted for the viewer (TIFF and PDF pages as PNG).
//!
//! A conversion decodes a whole page, which for a large scan is hundreds of megabytes, so only
//! [`CONVERSIONS`] run at a time, each to the end even if its client leaves (its permit goes
//! with it), and results are kept in a cache of at most [`CACHE_BYTES`]: a page asked for
//! again, by a viewer or by an attacker, costs a copy, not a decode.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::Semaphore;

/// Conversions at once, per process.
const CONVERSIONS: usize = 2;
/// Cached PNG bytes, per process.
const CACHE_BYTES: usize = 64 << 20;

#[derive(Clone)]
pub struct Previews {
    permits: Arc<Semaphore>,
    cache: Arc<Mutex<Cache>>,
    /// One lock per page being made, so that concurrent asks for it wait for one conversion.
    making: Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>,
}

/// Oldest first; evicted from the front.
#[derive(Default)]
struct Cache {
    entries: VecDeque<(String, Bytes)>,
    bytes: usize,
}

impl Cache {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn insert(&mut self, key: String, value: Bytes, budget: usize) {
        if value.len() > budget || self.get(&key).is_some() {
            return;
        }
        while self.bytes + value.len() > budget {
            match self.entries.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
        self.bytes += value.len();
        self.entries.push_back((key, value));
    }
}

/// Why a preview could not be made.
#[derive(Debug)]
pub enum PreviewError<E> {
    /// The fetch or the conversion failed.
    Failed(E),
    /// The conversion thread panicked.
    Panicked(String),
}

impl Default for Previews {
    fn default() -> Self {
        Previews {
            permits: Arc::new(Semaphore::new(CONVERSIONS)),
            cache: Arc::new(Mutex::new(Cache::default())),
            making: Arc::default(),
        }
    }
}

impl Previews {
    fn cached(&self, key: &str) -> Option<Bytes> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        making.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = making.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        making.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }

    /// The preview under `key`: cached, or made by `fetch` (async, e.g. a download) and then
    /// `convert` (blocking) while holding one of the conversion permits.
    pub async fn get_or_make<P, E>(
        &self,
        key: String,
        fetch: impl Future<Output = Result<P, E>>,
        convert: impl FnOnce(P) -> Result<Vec<u8>, E> + Send + 'static,
    ) -> Result<Bytes, PreviewError<E>>
    where
        P: Send + 'static,
        E: Send + 'static,
    {
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let turn = self.lock_for(&key).lock_owned().await;
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| PreviewError::Panicked(e.to_string()))?;
        // Another request may have made it while this one waited.
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let input = fetch.await.map_err(PreviewError::Failed)?;
        let cache = Arc::clone(&self.cache);
        let made = tokio::task::spawn_blocking(move || {
            let _held = (permit, turn);
            let png = Bytes::from(convert(input)?);
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, png.clone(), CACHE_BYTES);
            Ok(png)
        });
        match made.await {
            Ok(made) => made.map_err(PreviewError::Failed),
            Err(e) => Err(PreviewError::Panicked(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_to_its_budget_oldest_out_first() {
        let mut cache = Cache::default();
        cache.insert("a".into(), Bytes::from(vec![0; 40]), 100);
        cache.insert("b".into(), Bytes::from(vec![0; 40]), 100);
        cache.insert("c".into(), Bytes::from(vec![0; 40]), 100);
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        assert_eq!(cache.bytes, 80);
        cache.insert("huge".into(), Bytes::from(vec![0; 101]), 100);
        assert!(cache.get("huge").is_none());
        assert_eq!(cache.bytes, 80);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_is_converted_once_however_often_it_is_asked_for() {
        let previews = Previews::default();
        let conversions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut asks = Vec::new();
        for _ in 0..8 {
            let (previews, conversions) = (previews.clone(), conversions.clone());
            asks.push(tokio::spawn(async move {
                previews
                    .get_or_make("file:1".into(), async { Ok::<_, String>(()) }, move |()| {
                        conversions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(vec![1, 2, 3])
                    })
                    .await
                    .unwrap()
            }));
        }
        for ask in asks {
            assert_eq!(&ask.await.unwrap()[..], &[1, 2, 3]);
        }
        assert_eq!(conversions.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
