//! [`Facts`] inside a write transaction: the questions a departure policy asks, each one
//! statement over the objects and their attributes. The classes and values come from the
//! policy and are bound; nothing here knows what they mean.

use async_trait::async_trait;

use super::{Tx, id_list, query_as, query_scalar};
use crate::error::Result;
use crate::model::BoxRow;
use crate::store::departures::{Class, Facts, ObjectFacts};

/// The facts of box `b` as the transaction `tx` sees them.
pub(super) struct TxFacts<'t, 'c> {
    tx: &'t mut Tx<'c>,
    box_id: i64,
}

impl<'t, 'c> TxFacts<'t, 'c> {
    pub(super) fn new(tx: &'t mut Tx<'c>, b: &BoxRow) -> Self {
        Self { tx, box_id: b.id }
    }
}

/// The first value (by position), lower-cased, of the attribute named by a bound parameter,
/// of the object aliased `o`.
fn first_value(o: &str) -> String {
    format!(
        "(SELECT lower(a.value) FROM object_attributes a \
         WHERE a.object_id = {o}.id AND a.name_lc = ? ORDER BY a.position LIMIT 1)"
    )
}

/// What [`Facts::object`] reads: one row by primary key (its attribute by the attributes'
/// primary key); binds the attribute name, then the object id.
pub(super) fn object_sql() -> String {
    format!(
        "SELECT o.folder_id, {} AS v, lower(coalesce(o.payload_type, '')) AS ty FROM objects o WHERE o.id = ?",
        first_value("o")
    )
}

/// A predicate: the object aliased `o` is of `class`; [`class_binds`] gives its values.
fn class_sql(o: &str, class: &Class<'_>) -> String {
    let mut alternatives = Vec::new();
    if !class.values.is_empty() {
        let list = vec!["?"; class.values.len()].join(", ");
        alternatives.push(format!("coalesce({}, '') IN ({list})", first_value(o)));
    }
    for _ in class.payload_types {
        alternatives.push(format!("lower(coalesce({o}.payload_type, '')) LIKE ? ESCAPE '\\'"));
    }
    if alternatives.is_empty() { "(1 = 0)".into() } else { format!("({})", alternatives.join(" OR ")) }
}

/// The values [`class_sql`] binds, in order.
fn class_binds(class: &Class<'_>) -> Vec<String> {
    let mut binds = Vec::new();
    if !class.values.is_empty() {
        binds.push(class.attribute.to_ascii_lowercase());
        binds.extend(class.values.iter().map(|v| v.to_ascii_lowercase()));
    }
    for prefix in class.payload_types {
        let mut p = String::with_capacity(prefix.len() + 1);
        for c in prefix.to_ascii_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        binds.push(p);
    }
    binds
}

#[async_trait]
impl Facts for TxFacts<'_, '_> {
    async fn object(&mut self, id: i64, attribute: &str) -> Result<Option<ObjectFacts>> {
        let row: Option<(i64, Option<String>, String)> =
            query_as(object_sql()).bind(attribute.to_ascii_lowercase()).bind(id).fetch_optional(&mut *self.tx).await?;
        Ok(row.map(|(folder, value, payload_type)| ObjectFacts { folder, value, payload_type }))
    }

    async fn newest_of(&mut self, folder: i64, class: &Class<'_>) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT o.id FROM objects o WHERE o.folder_id = ? AND {} ORDER BY o.stored_at_ms DESC, o.id DESC LIMIT 1",
            class_sql("o", class)
        );
        let mut q = query_scalar(sql).bind(folder);
        for v in class_binds(class) {
            q = q.bind(v);
        }
        Ok(q.fetch_optional(&mut *self.tx).await?)
    }

    async fn holds_other(&mut self, folder: i64, excluding: &[i64], class: &Class<'_>) -> Result<bool> {
        let outside = match excluding {
            [] => String::new(),
            ids => format!(" AND o.id NOT IN ({})", id_list(ids)),
        };
        let sql =
            format!("SELECT 1 FROM objects o WHERE o.folder_id = ?{outside} AND NOT {} LIMIT 1", class_sql("o", class));
        let mut q = query_scalar::<i64>(sql).bind(folder);
        for v in class_binds(class) {
            q = q.bind(v);
        }
        Ok(q.fetch_optional(&mut *self.tx).await?.is_some())
    }

    async fn having(&mut self, name: &str, value: &str, class: &Class<'_>) -> Result<Vec<i64>> {
        let sql = format!(
            "SELECT o.id FROM object_attributes d JOIN objects o ON o.id = d.object_id \
             WHERE d.box_id = ? AND d.name_lc = ? AND d.value = ? AND {} ORDER BY o.id",
            class_sql("o", class)
        );
        let mut q = query_scalar(sql).bind(self.box_id).bind(name.to_ascii_lowercase()).bind(value.to_string());
        for v in class_binds(class) {
            q = q.bind(v);
        }
        Ok(q.fetch_all(&mut *self.tx).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_bind_their_attribute_values_and_escaped_prefixes_in_order() {
        let class = Class { attribute: "X-Kind", values: &["A", "b"], payload_types: &["text/50%_x"] };
        let sql = class_sql("o", &class);
        assert_eq!(sql.matches('?').count(), 4, "{sql}");
        assert_eq!(class_binds(&class), ["x-kind", "a", "b", "text/50\\%\\_x%"]);
        let none = Class { attribute: "x", values: &[], payload_types: &[] };
        assert_eq!(class_sql("o", &none), "(1 = 0)");
        assert!(class_binds(&none).is_empty());
    }
}
