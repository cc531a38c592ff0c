//! What the fuzz targets share: an allocation meter (a parser must not allocate far more
//! than its input), the verdict every refusal must have (a client error, never a 500), and a
//! real message store for the targets that need one (search, cursors).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use cpm_nms::api::urls::BoxUrls;
use cpm_nms::config::Settings;
use cpm_nms::error::Error;
use cpm_nms::model::{Attribute, BoxRow, Folder};
use cpm_nms::nms::{Actor, Nms, ObjectInput, Parent};

/// The system allocator, counting the bytes held and their peak.
pub struct Meter;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = HELD.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(n: usize) {
    HELD.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Meter = Meter;

/// Run `f`, returning its result and the most bytes it held at once beyond what was held
/// before (allocations of every thread count, so use it around single-threaded code).
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = HELD.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    (r, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// Run `f` on `input` and insist that it never held more than `per_byte` bytes per input
/// byte beyond `fixed` bytes: a parser that does is a memory-exhaustion lever.
pub fn bounded<R>(what: &str, input: &[u8], per_byte: usize, fixed: usize, f: impl FnOnce() -> R) -> R {
    let (r, peak) = peak_during(f);
    let limit = fixed + per_byte * input.len();
    assert!(peak <= limit, "{what}: {peak} bytes held for a {}-byte input (limit {limit})", input.len());
    r
}

/// A refusal of bad input must be a client error (4xx), never a 500.
pub fn assert_client_error(e: &Error) {
    assert!(!matches!(e, Error::Internal(_)), "bad input answered as a server failure: {e:?}");
}

/// A refusal of a parser that only judges its input: 400 SVC0002 or SVC0003.
pub fn assert_invalid(e: &Error) {
    assert!(matches!(e, Error::InvalidInput { .. } | Error::InvalidValue { .. }), "unexpected refusal {e:?}");
}

/// A message store as the server runs it (SQLite in a scratch directory, blobs in memory),
/// with one box holding a few objects and folders.
pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub nms: Nms,
    pub b: BoxRow,
    pub urls: BoxUrls,
    pub root: Folder,
    /// A folder below the root (made by placement).
    pub folder: Folder,
    _dir: tempfile::TempDir,
}

/// The base URL of the world's box URLs.
pub const PUBLIC_URL: &str = "http://nms.test";

/// The world, built on first use.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| match build() {
        Ok(w) => w,
        Err(e) => panic!("cannot build the fuzzing store: {e}"),
    })
}

fn build() -> Result<World, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let mut settings = Settings { data_dir: dir.path().to_path_buf(), ..Settings::default() };
    settings.storage.blob_url = "memory:///".into();
    settings.auth.cursor_secret = "fuzzing-cursor-secret".into();
    let (nms, b, root, folder) = rt.block_on(async {
        let nms = cpm_nms::startup::build_nms(&settings).await?;
        let b = nms.provision_box("base", "tel:+12125551212").await?;
        let attrs = |pairs: &[(&str, &str)]| -> Vec<Attribute> {
            pairs.iter().map(|(n, v)| Attribute { name: n.to_string(), values: vec![v.to_string()] }).collect()
        };
        let objects = [
            attrs(&[
                ("Message-Context", "chat-message"),
                ("Direction", "In"),
                ("From", "tel:+13105550000"),
                ("To", "tel:+12125551212"),
                ("Subject", "the weather will be fine today"),
                ("Conversation-ID", "c-1"),
                ("Date", "2014-12-13T21:40:00Z"),
            ]),
            attrs(&[
                ("Message-Context", "chat-message"),
                ("Direction", "Out"),
                ("From", "tel:+12125551212"),
                ("To", "tel:+13105550000"),
                ("Subject", "Are you coming to the football today?"),
                ("Conversation-ID", "c-1"),
            ]),
            attrs(&[("Subject", "a note"), ("X-Note", "x y z")]),
            attrs(&[("Subject", "Zoë"), ("Date", "2020-01-02T03:04:05Z")]),
        ];
        for (i, attributes) in objects.into_iter().enumerate() {
            let flags = if i % 2 == 0 { vec!["\\Seen".to_string()] } else { vec!["\\Flagged".to_string()] };
            let input = ObjectInput {
                parent: Parent::Unspecified,
                attributes,
                flags,
                correlation_id: None,
                correlation_tag: None,
            };
            nms.create_object(&b, Actor::Subscriber, input, nms.begin_deposit()).await?;
        }
        let root = nms.root_folder(&b).await?;
        let folder =
            nms.create_folder(&b, Actor::Subscriber, Parent::Path("/".into()), Some("Fuzz".into()), Vec::new()).await?;
        Ok::<_, Error>((nms, b, root, folder))
    })?;
    let urls = BoxUrls::new(PUBLIC_URL, &b.store, &b.address);
    Ok(World { rt, nms, b, urls, root, folder, _dir: dir })
}
