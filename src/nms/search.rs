//! Search (NMS 5.3.2.15-19, 6.7, 6.13): selection criteria compiled into a store [`Filter`],
//! scope and sort, with opaque paging cursors and the CreatedObjects creation cursor.
//!
//! A search cursor seals the position after the last item returned (its sort value and
//! internal id) for a *purpose* that names the box, its validity and a fingerprint of the
//! compiled criteria, scope and sort. So a cursor replayed with other criteria fails to open
//! exactly like a forged one (400 SVC0002 `fromCursor`), and, the key being kept in the data
//! directory, cursors survive restarts. Paging is keyset paging on (sort value, id): with no
//! change in between, pages continue exactly; items that exist throughout a walk are returned
//! exactly once whatever happens meanwhile, since neither their sort value nor their id
//! changes.
//!
//! Extension: a criterion may be a nested group, `{"searchCriteria": {criterion, operator}}`,
//! so operators nest (NMS 1.0 itself has one flat level).

use sha2::{Digest, Sha256};

use super::Nms;
use crate::error::{Error, Result};
use crate::model::{
    BoxRow, Filter, Folder, Object, Scope, SearchPosition, SearchQuery, Sort, SortKey, SortValue, Targets,
};

/// How deep groups may nest, and the longest text a substring or word criterion may search
/// for. (How many criteria one search may hold is `limits.max_search_criteria`.)
const MAX_DEPTH: usize = 8;
const MAX_TEXT_CHARS: usize = 1024;

/// Selection criteria as the client sent them (converted from the wire by the API layer).
#[derive(Clone, Debug, Default)]
pub struct SelectionInput {
    pub max_entries: Option<u64>,
    pub from_cursor: Option<String>,
    pub criteria: Option<CriteriaInput>,
    /// Public id of the scope folder (from `searchScope.resourceURL`).
    pub scope: Option<String>,
    pub non_recursive: bool,
    /// `sortCriteria.criterion[]`, then a bare `sortCriterion`.
    pub sort: Vec<SortInput>,
}

/// `searchCriteria`.
#[derive(Clone, Debug, Default)]
pub struct CriteriaInput {
    pub items: Vec<CriterionInput>,
    pub operator: Option<String>,
}

/// One `criterion`: a search of a type, or a nested group.
#[derive(Clone, Debug)]
pub enum CriterionInput {
    Leaf { kind: String, name: Option<String>, value: Option<String> },
    Group(CriteriaInput),
}

/// One sort criterion.
#[derive(Clone, Debug)]
pub struct SortInput {
    pub kind: String,
    pub name: Option<String>,
    pub order: Option<String>,
}

/// What an object search answers.
#[derive(Debug)]
pub enum ObjectResult {
    /// `objectList`: the page, a cursor while more may follow, and for CreatedObjects
    /// searches the creation cursor.
    Objects { objects: Vec<Object>, cursor: Option<String>, creation_cursor: Option<String> },
    /// `objectReferenceList` of recently vanished objects (public ids).
    Vanished(Vec<String>),
}

/// A page of a folder search.
#[derive(Debug)]
pub struct FolderResult {
    pub folders: Vec<Folder>,
    pub cursor: Option<String>,
}

/// The object search types, for error messages.
const OBJECT_TYPES: &str =
    "Date, Attribute, AllTextAttributes, Flag, WholeWord, VanishedObjects, CreatedObjects, PresetSearch";
const FOLDER_TYPES: &str = "Date, Attribute, AllTextAttributes, Flag";
const PRESETS: &str = "RemoteParty";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Over {
    Objects,
    Folders,
}

/// A compiled search.
struct Compiled {
    filter: Option<Filter>,
    /// A CreatedObjects search: sorted by creation, answers a creation cursor.
    created: bool,
    /// A preset asked for this sort unless the client gave one.
    preset_sort: Option<Sort>,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `minDate=..&maxDate=..` (xsd:dateTime) into a millisecond range.
fn date_range(value: &str) -> Result<Filter> {
    let bad = || Error::invalid(format!("criterion value {value:?} (minDate=<dateTime>&maxDate=<dateTime>)"));
    let (mut min, mut max) = (None, None);
    for pair in value.split('&').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(bad)?;
        let v = v.trim();
        let t = chrono::DateTime::parse_from_rfc3339(v)
            .map(|d| d.timestamp_millis())
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f").map(|d| d.and_utc().timestamp_millis())
            })
            .map_err(|_| bad())?;
        match k.trim() {
            k if eq(k, "minDate") => min = Some(t),
            k if eq(k, "maxDate") => max = Some(t),
            _ => return Err(bad()),
        }
    }
    if min.is_none() && max.is_none() {
        return Err(bad());
    }
    Ok(Filter::Stored { min_ms: min, max_ms: max })
}

struct Compiler<'a> {
    nms: &'a Nms,
    b: &'a BoxRow,
    over: Over,
    count: usize,
    created: bool,
    preset_sort: Option<Sort>,
    /// Compiling a subscription filter: CreatedObjects and VanishedObjects are predicates
    /// on each notified item, usable anywhere.
    for_filter: bool,
}

impl Compiler<'_> {
    fn group(&mut self, c: &CriteriaInput, depth: usize) -> Result<Filter> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(format!("searchCriteria (nested deeper than {MAX_DEPTH})")));
        }
        if c.items.is_empty() {
            return Err(Error::invalid("searchCriteria criterion (at least one)"));
        }
        let op = c.operator.as_deref().map(str::trim).unwrap_or("And");
        let mut subs = Vec::with_capacity(c.items.len());
        for item in &c.items {
            subs.push(match item {
                CriterionInput::Group(g) => self.group(g, depth + 1)?,
                CriterionInput::Leaf { kind, name, value } => {
                    self.count += 1;
                    let max = self.nms.limits.max_search_criteria;
                    if max > 0 && self.count > max as usize {
                        return Err(Error::LimitExceeded {
                            what: "searchCriteria criteria".into(),
                            key: "limits.max_search_criteria",
                            limit: u64::from(max),
                        });
                    }
                    let top_and = depth == 0 && (eq(op, "And"));
                    self.leaf(kind.trim(), name.as_deref(), value.as_deref(), top_and)?
                }
            });
        }
        match op {
            o if eq(o, "And") => Ok(if subs.len() == 1 { subs.remove(0) } else { Filter::All(subs) }),
            o if eq(o, "Or") => Ok(if subs.len() == 1 { subs.remove(0) } else { Filter::Any(subs) }),
            // Not with several criteria negates their conjunction.
            o if eq(o, "Not") => {
                Ok(Filter::Not(Box::new(if subs.len() == 1 { subs.remove(0) } else { Filter::All(subs) })))
            }
            _ => Err(Error::invalid_value("searchCriteria operator", "And, Or, Not")),
        }
    }

    fn leaf(&mut self, kind: &str, name: Option<&str>, value: Option<&str>, top_and: bool) -> Result<Filter> {
        // NUL is never text; the full-text query syntax cannot carry it either.
        if value.is_some_and(|v| v.contains('\0')) || name.is_some_and(|n| n.contains('\0')) {
            return Err(Error::invalid("criterion (NUL character)"));
        }
        if (eq(kind, "AllTextAttributes") || eq(kind, "WholeWord"))
            && value.is_some_and(|v| v.chars().count() > MAX_TEXT_CHARS)
        {
            return Err(Error::invalid(format!("criterion value (at most {MAX_TEXT_CHARS} characters)")));
        }
        let valid = if self.over == Over::Objects { OBJECT_TYPES } else { FOLDER_TYPES };
        let objects_only = |k: &str| -> Result<()> {
            if self.over == Over::Folders {
                return Err(Error::invalid_value(format!("criterion type {k}"), FOLDER_TYPES));
            }
            Ok(())
        };
        let value_of = |what: &str| value.ok_or_else(|| Error::invalid(format!("criterion value ({what})")));
        let name_of = |what: &str| {
            name.map(str::trim)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| Error::invalid(format!("criterion name ({what})")))
        };
        Ok(match kind {
            k if eq(k, "Date") => date_range(value_of("Date")?)?,
            k if eq(k, "Attribute") => Filter::Attribute {
                name_lc: name_of("Attribute")?.to_ascii_lowercase(),
                value: value_of("Attribute")?.to_string(),
            },
            k if eq(k, "AllTextAttributes") => {
                let needle = value_of("AllTextAttributes")?;
                if needle.is_empty() { Filter::All(Vec::new()) } else { Filter::Text { needle: needle.to_string() } }
            }
            k if eq(k, "Flag") => {
                let flag = name_of("Flag")?;
                super::validate_flag(flag)?;
                let set = match value.map(str::trim).unwrap_or("") {
                    "" => true,
                    v if eq(v, "true") => true,
                    v if eq(v, "false") => false,
                    _ => return Err(Error::invalid_value("criterion value (Flag)", "true, false")),
                };
                Filter::Flag { flag_lc: flag.to_ascii_lowercase(), set }
            }
            k if eq(k, "WholeWord") => {
                objects_only(k)?;
                let word = value_of("WholeWord")?.trim();
                if word.is_empty() {
                    return Err(Error::invalid("criterion value (WholeWord)"));
                }
                Filter::Word { word: word.to_string() }
            }
            k if eq(k, "CreatedObjects") => {
                objects_only(k)?;
                if !self.for_filter && (!top_and || self.created) {
                    return Err(Error::invalid("CreatedObjects (only once, combined with And at the top level)"));
                }
                self.created = true;
                let seq = match value.map(str::trim).unwrap_or("") {
                    "" => 0,
                    c => self.nms.open_creation_cursor(self.b, c)?,
                };
                Filter::CreatedAfter { seq }
            }
            k if eq(k, "VanishedObjects") => {
                objects_only(k)?;
                if self.for_filter {
                    return Ok(Filter::Vanished);
                }
                return Err(Error::invalid("VanishedObjects (cannot be negated or combined with other criteria)"));
            }
            k if eq(k, "PresetSearch") => {
                objects_only(k)?;
                let preset = name_of("PresetSearch")?;
                if eq(preset, "RemoteParty") {
                    // The conversation with one party: it sent the object or received it.
                    let party = value_of("PresetSearch RemoteParty")?.to_string();
                    self.preset_sort.get_or_insert(Sort { key: SortKey::Date, descending: true });
                    Filter::Any(vec![
                        Filter::Attribute { name_lc: "from".into(), value: party.clone() },
                        Filter::Attribute { name_lc: "to".into(), value: party },
                    ])
                } else {
                    return Err(Error::invalid_value(format!("PresetSearch name {preset}"), PRESETS));
                }
            }
            _ => return Err(Error::invalid_value(format!("criterion type {kind}"), valid)),
        })
    }
}

/// Whether the criteria are exactly one VanishedObjects criterion.
fn is_vanished(c: &CriteriaInput) -> bool {
    matches!(c.items.as_slice(), [CriterionInput::Leaf { kind, .. }] if eq(kind.trim(), "VanishedObjects"))
        && c.operator.as_deref().is_none_or(|o| eq(o.trim(), "And"))
}

/// A deterministic text for what a cursor is bound to.
fn canon(f: &Filter, out: &mut String) {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    match f {
        Filter::All(l) | Filter::Any(l) => {
            out.push_str(if matches!(f, Filter::All(_)) { "all(" } else { "any(" });
            for x in l {
                canon(x, out);
                out.push(',');
            }
            out.push(')');
        }
        Filter::Not(x) => {
            out.push_str("not(");
            canon(x, out);
            out.push(')');
        }
        Filter::Stored { min_ms, max_ms } => out.push_str(&format!("stored({min_ms:?},{max_ms:?})")),
        Filter::Attribute { name_lc, value } => out.push_str(&format!("attr({},{})", q(name_lc), q(value))),
        Filter::Text { needle } => out.push_str(&format!("text({})", q(needle))),
        Filter::Word { word } => out.push_str(&format!("word({})", q(word))),
        Filter::Flag { flag_lc, set } => out.push_str(&format!("flag({},{set})", q(flag_lc))),
        Filter::CreatedAfter { seq } => out.push_str(&format!("created({seq})")),
        Filter::Vanished => out.push_str("vanished"),
    }
}

fn fingerprint(filter: &Option<Filter>, scope: &Option<Scope>, sort: &Sort) -> String {
    let mut s = String::new();
    if let Some(f) = filter {
        canon(f, &mut s);
    }
    s.push_str(&format!("|{scope:?}|{:?}|{}", sort.key, sort.descending));
    hex::encode(&Sha256::digest(s.as_bytes())[..16])
}

fn encode_position(p: &SearchPosition) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.extend_from_slice(&p.id.to_be_bytes());
    match &p.value {
        SortValue::Int(v) => {
            out.push(b'i');
            out.extend_from_slice(&v.to_be_bytes());
        }
        SortValue::Text(t) => {
            out.push(b't');
            out.extend_from_slice(t.as_bytes());
        }
    }
    out
}

fn decode_position(raw: &[u8]) -> Option<SearchPosition> {
    let (id, rest) = raw.split_at_checked(8)?;
    let id = i64::from_be_bytes(id.try_into().ok()?);
    let (tag, rest) = rest.split_first()?;
    let value = match tag {
        b'i' => SortValue::Int(i64::from_be_bytes(rest.try_into().ok()?)),
        b't' => SortValue::Text(String::from_utf8(rest.to_vec()).ok()?),
        _ => return None,
    };
    Some(SearchPosition { value, id })
}

impl Nms {
    /// What a creation cursor of box `b` is sealed for.
    pub fn creation_purpose(b: &BoxRow) -> String {
        format!("creation:{}:{}", b.id, b.validity)
    }

    /// The creation cursor meaning "everything created up to `seq`".
    pub fn creation_cursor(&self, b: &BoxRow, seq: i64) -> String {
        self.tokens.seal(&Self::creation_purpose(b), &seq.to_be_bytes())
    }

    /// The `seq` of a creation cursor of box `b` (400 SVC0002 if it is not one).
    pub fn open_creation_cursor(&self, b: &BoxRow, cursor: &str) -> Result<i64> {
        let raw = self
            .tokens
            .open(&Self::creation_purpose(b), cursor)
            .ok_or_else(|| Error::invalid("criterion value (creationCursor)"))?;
        let raw: [u8; 8] = raw.try_into().map_err(|_| Error::invalid("criterion value (creationCursor)"))?;
        Ok(i64::from_be_bytes(raw))
    }

    /// The paging cursor for continuing a search after `p`; `purpose` binds it to the box and
    /// the compiled search (see the module doc).
    pub fn search_cursor(&self, purpose: &str, p: &SearchPosition) -> String {
        self.tokens.seal(purpose, &encode_position(p))
    }

    /// Open a search cursor sealed for `purpose` (400 SVC0002 `fromCursor` if it is not one).
    pub fn open_search_cursor(&self, purpose: &str, cursor: &str) -> Result<SearchPosition> {
        self.tokens
            .open(purpose, cursor)
            .and_then(|raw| decode_position(&raw))
            .ok_or_else(|| Error::invalid("fromCursor"))
    }

    /// Compile subscription filter criteria (NMS 5.3.2.20), tested on each notified item
    /// (see `subscriptions`): CreatedObjects (with an optional creationCursor) holds for
    /// objects created after the cursor, VanishedObjects for deleted and expired items.
    pub async fn compile_filter(&self, b: &BoxRow, criteria: &CriteriaInput) -> Result<Filter> {
        let mut c = Compiler {
            nms: self,
            b,
            over: Over::Objects,
            count: 0,
            created: false,
            preset_sort: None,
            for_filter: true,
        };
        c.group(criteria, 0)
    }

    /// A search page's size for `maxEntries` `n`: at most `nms.search_page_max` (clamped, or
    /// refused with `nms.search_page_max_refuse`).
    fn page_size(&self, n: u64) -> Result<u32> {
        let max = u64::from(self.policy.search_page_max);
        if n > max && self.policy.search_page_max_refuse {
            return Err(Error::Forbidden { reason: format!("maxEntries above {max} (nms.search_page_max)") });
        }
        Ok(n.min(max) as u32)
    }

    /// Compile selection criteria into one page's query and the cursor purpose.
    async fn compile(&self, b: &BoxRow, over: Over, input: &SelectionInput) -> Result<(SearchQuery, bool, String)> {
        let max = match input.max_entries {
            None => return Err(Error::invalid("maxEntries (required)")),
            Some(0) => return Err(Error::invalid("maxEntries (at least 1)")),
            Some(n) => self.page_size(n)?,
        };
        let mut c = Compiler { nms: self, b, over, count: 0, created: false, preset_sort: None, for_filter: false };
        let filter = input.criteria.as_ref().map(|g| c.group(g, 0)).transpose()?;
        let compiled = Compiled { filter, created: c.created, preset_sort: c.preset_sort };
        let scope = match &input.scope {
            None => None,
            Some(id) => {
                let f =
                    self.meta.get_folder(b, id).await?.ok_or_else(|| Error::invalid(format!("searchScope {id}")))?;
                Some(Scope { folder_id: f.id, recursive: !input.non_recursive })
            }
        };
        let sort = if compiled.created {
            // Creation order, so the last page's creation cursor covers everything returned.
            Sort { key: SortKey::Creation, descending: false }
        } else if let Some(s) = input.sort.first() {
            let descending = match s.order.as_deref().map(str::trim) {
                None | Some("") => true,
                Some(o) if eq(o, "Descending") => true,
                Some(o) if eq(o, "Ascending") => false,
                Some(_) => return Err(Error::invalid_value("sortCriterion order", "Ascending, Descending")),
            };
            let key = match s.kind.trim() {
                k if eq(k, "Date") => SortKey::Date,
                k if eq(k, "Attribute") => SortKey::Attribute(
                    s.name
                        .as_deref()
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| Error::invalid("sortCriterion name (Attribute)"))?
                        .to_ascii_lowercase(),
                ),
                _ => return Err(Error::invalid_value("sortCriterion type", "Date, Attribute")),
            };
            Sort { key, descending }
        } else {
            // Default: storage order, the cheapest complete walk.
            compiled.preset_sort.unwrap_or(Sort { key: SortKey::Id, descending: false })
        };
        let kind = if over == Over::Objects { "objects" } else { "folders" };
        let purpose = format!("search:{kind}:{}:{}:{}", b.id, b.validity, fingerprint(&compiled.filter, &scope, &sort));
        let after = match &input.from_cursor {
            None => None,
            Some(c) if c.is_empty() => None,
            Some(c) => Some(self.open_search_cursor(&purpose, c)?),
        };
        Ok((SearchQuery { filter: compiled.filter, scope, sort, after, limit: max }, compiled.created, purpose))
    }

    /// `POST objects/operations/search`.
    pub async fn search_objects(&self, b: &BoxRow, input: &SelectionInput) -> Result<ObjectResult> {
        let start = std::time::Instant::now();
        let res = self.search_objects_timed(b, input).await;
        crate::metrics::search(false, start.elapsed());
        res
    }

    async fn search_objects_timed(&self, b: &BoxRow, input: &SelectionInput) -> Result<ObjectResult> {
        if let Some(c) = &input.criteria
            && is_vanished(c)
        {
            let max = input.max_entries.ok_or_else(|| Error::invalid("maxEntries (required)"))?;
            let max = self.page_size(max.max(1))?;
            return Ok(ObjectResult::Vanished(self.meta.vanished_objects(b, max).await?));
        }
        let (q, created, purpose) = self.compile(b, Over::Objects, input).await?;
        let page = self.meta.search_objects(b, &q).await?;
        let cursor = page.next.as_ref().map(|p| self.search_cursor(&purpose, p));
        let creation_cursor = created.then(|| {
            // Complete up to the snapshot's modseq once the walk ends; mid-walk, up to the
            // last object returned (later pages continue from there).
            // One request's objects share a creation sequence, and a page may end inside
            // them: mid-walk, the cursor stays just before the last one's (some may come
            // again; none is lost).
            let seq = match (&page.next, page.objects.last()) {
                (Some(SearchPosition { value: SortValue::Int(v), .. }), _) => v - 1,
                _ => page.modseq,
            };
            self.creation_cursor(b, seq)
        });
        Ok(ObjectResult::Objects { objects: page.objects, cursor, creation_cursor })
    }

    /// `POST folders/operations/search`.
    pub async fn search_folders(&self, b: &BoxRow, input: &SelectionInput) -> Result<FolderResult> {
        let (q, _, purpose) = self.compile(b, Over::Folders, input).await?;
        let start = std::time::Instant::now();
        let page = self.meta.search_folders(b, &q).await;
        crate::metrics::search(true, start.elapsed());
        let page = page?;
        let cursor = page.next.as_ref().map(|p| self.search_cursor(&purpose, p));
        Ok(FolderResult { folders: page.folders, cursor })
    }

    /// The objects a bulk operation's `selectionCriteria` names, in storage order
    /// (`fromCursor` and sort are not used): up to `maxEntries` of them; when `maxEntries`
    /// is absent or above `nms.bulk_max_items`, more matches than that limit refuse the
    /// request rather than acting on a part chosen by the server.
    pub async fn bulk_targets(&self, b: &BoxRow, input: &SelectionInput) -> Result<Targets> {
        let cap = self.policy.bulk_max_items;
        let mut input = input.clone();
        input.from_cursor = None;
        input.sort.clear();
        let refuse_beyond = input.max_entries.is_none_or(|n| n > u64::from(cap));
        input.max_entries = Some(input.max_entries.unwrap_or(u64::from(cap)).min(u64::from(cap)));
        if let Some(c) = &input.criteria
            && is_vanished(c)
        {
            return Err(Error::invalid("VanishedObjects (not a selection of existing objects)"));
        }
        let (query, _, _) = self.compile(b, Over::Objects, &input).await?;
        Ok(Targets::Matching { query, refuse_beyond })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        for p in [
            SearchPosition { value: SortValue::Int(-5), id: 42 },
            SearchPosition { value: SortValue::Text("Zoë".into()), id: 7 },
            SearchPosition { value: SortValue::Text(String::new()), id: 0 },
        ] {
            assert_eq!(decode_position(&encode_position(&p)), Some(p));
        }
        assert_eq!(decode_position(b"short"), None);
        assert_eq!(decode_position(b"\0\0\0\0\0\0\0\x01x"), None);
    }

    #[test]
    fn dates_parse_inclusive_min_exclusive_max() {
        let f = date_range("minDate=2013-11-11T09:30:10Z&maxDate=2013-11-12T00:00:00+01:00").unwrap();
        assert_eq!(f, Filter::Stored { min_ms: Some(1_384_162_210_000), max_ms: Some(1_384_210_800_000) });
        assert!(date_range("").is_err());
        assert!(date_range("minDate=yesterday").is_err());
        assert!(date_range("since=2013-11-11T09:30:10Z").is_err());
    }

    #[test]
    fn fingerprints_differ_with_criteria_scope_and_sort() {
        let a = Some(Filter::Attribute { name_lc: "from".into(), value: "x".into() });
        let b = Some(Filter::Attribute { name_lc: "from".into(), value: "y".into() });
        let s = Sort { key: SortKey::Id, descending: false };
        let d = Sort { key: SortKey::Date, descending: false };
        let scope = Some(Scope { folder_id: 3, recursive: true });
        let all = [
            fingerprint(&a, &None, &s),
            fingerprint(&b, &None, &s),
            fingerprint(&a, &scope, &s),
            fingerprint(&a, &None, &d),
            fingerprint(&None, &None, &s),
        ];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(fingerprint(&a, &None, &s), fingerprint(&a.clone(), &None, &s.clone()));
    }
}
