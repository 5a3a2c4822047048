//! How a block stores spans: the canonical span schema plus the columns
//! format version 2 adds.
//!
//! Two forms of a span row exist:
//!
//! - **canonical** ([`span_schema`]): what OTLP conversion builds, what the
//!   live buffer holds and what trace-by-ID returns. Every attribute is in its
//!   list with its value.
//! - **stored** ([`BlockLayout::stored_schema`]): what `data.parquet` holds
//!   from format version 2 on. The canonical columns, then the tree-structure
//!   columns (nested-set numbers and child counts, see [`structure`]), then one
//!   typed column per *dedicated* attribute. A dedicated attribute's value
//!   moves out of its list into the column, so that Parquet statistics,
//!   dictionaries and the page index prune on it; its list entry keeps the key
//!   and position with type [`AttributeType::Dedicated`], so the canonical
//!   form (and OTLP attribute order) is rebuilt exactly.
//!
//! Which attributes are dedicated is decided per block when it is written
//! and recorded in `meta.json`: every [well-known](WELL_KNOWN) semantic
//! convention key present in the block, plus the most frequent other keys
//! ([`choose_dedicated`]). Nobody configures it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::schema::{AttributeType, span_schema};

/// Names of the tree-structure columns of the stored form.
///
/// They follow Tempo's nested-set model: walking each trace's tree depth
/// first from its roots, a span gets `left` when first reached and `right`
/// when left, from one counter starting at 1, so `a` is an ancestor of `b`
/// exactly when `a.left < b.left && b.right < a.right`. `parent` holds the
/// parent's `left` (−1 for a root). Spans not reachable from a root (their
/// parent is in another fragment, or the IDs are inconsistent) hold 0 in all
/// three: structural operators never match them.
pub mod structure {
    /// `Int32`: nested-set left bound.
    pub const NESTED_SET_LEFT: &str = "nested_set_left";
    /// `Int32`: nested-set right bound.
    pub const NESTED_SET_RIGHT: &str = "nested_set_right";
    /// `Int32`: the parent's left bound; −1 for roots, 0 when unknown.
    pub const NESTED_SET_PARENT: &str = "nested_set_parent";
    /// `Int32`: number of direct children in the block's copy of the trace.
    pub const CHILD_COUNT: &str = "child_count";

    /// The parent value of a root span.
    pub const ROOT_PARENT: i32 = -1;

    /// All four, in schema order.
    pub const ALL: [&str; 4] = [
        NESTED_SET_LEFT,
        NESTED_SET_RIGHT,
        NESTED_SET_PARENT,
        CHILD_COUNT,
    ];
}

/// Where an attribute lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttrScope {
    /// Resource attributes.
    Resource,
    /// Span attributes.
    Span,
}

impl AttrScope {
    /// `resource` or `span`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resource => "resource",
            Self::Span => "span",
        }
    }

    /// The canonical list column holding this scope's attributes.
    pub fn list_column(self) -> &'static str {
        match self {
            Self::Resource => crate::schema::columns::RESOURCE_ATTRIBUTES,
            Self::Span => crate::schema::columns::ATTRIBUTES,
        }
    }
}

/// The value type of a dedicated column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedicatedType {
    /// OTLP `string_value`, stored as `Utf8`.
    String,
    /// OTLP `int_value`, stored as `Int64`.
    Int,
    /// OTLP `double_value`, stored as `Float64`.
    Double,
    /// OTLP `bool_value`, stored as `Boolean`.
    Bool,
}

impl DedicatedType {
    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Int => DataType::Int64,
            Self::Double => DataType::Float64,
            Self::Bool => DataType::Boolean,
        }
    }

    /// The attribute type whose values this column takes.
    pub fn attribute_type(self) -> AttributeType {
        match self {
            Self::String => AttributeType::String,
            Self::Int => AttributeType::Int,
            Self::Double => AttributeType::Double,
            Self::Bool => AttributeType::Bool,
        }
    }

    /// The column type for an attribute type, if it has one.
    pub fn for_attribute_type(ty: AttributeType) -> Option<Self> {
        Some(match ty {
            AttributeType::String => Self::String,
            AttributeType::Int => Self::Int,
            AttributeType::Double => Self::Double,
            AttributeType::Bool => Self::Bool,
            _ => return None,
        })
    }
}

/// One dedicated attribute column of a block, as recorded in `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DedicatedColumn {
    /// Resource or span.
    pub scope: AttrScope,
    /// The attribute key.
    pub key: String,
    /// The value type the column holds; values of other types stay in the
    /// attribute list.
    #[serde(rename = "type")]
    pub ty: DedicatedType,
}

impl DedicatedColumn {
    /// A dedicated column.
    pub fn new(scope: AttrScope, key: impl Into<String>, ty: DedicatedType) -> Self {
        Self {
            scope,
            key: key.into(),
            ty,
        }
    }

    /// The Parquet/Arrow column name: `<scope>.<key>`, e.g.
    /// `span.http.route`. Column names cannot collide with canonical
    /// columns, none of which contains a dot.
    pub fn column_name(&self) -> String {
        format!("{}.{}", self.scope.as_str(), self.key)
    }

    /// The Arrow field.
    pub fn field(&self) -> Field {
        Field::new(self.column_name(), self.ty.data_type(), true)
    }
}

impl fmt::Display for DedicatedColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.column_name(), self.ty)
    }
}

/// The semantic-convention keys that get a column in every block they
/// appear in, with their conventional types (OTel semantic conventions,
/// current and the older names real SDKs still send).
pub const WELL_KNOWN: &[(AttrScope, &str, DedicatedType)] = {
    use AttrScope::{Resource as R, Span as S};
    use DedicatedType::{Int as I, String as T};
    &[
        // HTTP
        (S, "http.request.method", T),
        (S, "http.response.status_code", I),
        (S, "http.route", T),
        (S, "url.path", T),
        (S, "url.full", T),
        (S, "url.scheme", T),
        (S, "server.address", T),
        (S, "server.port", I),
        (S, "client.address", T),
        (S, "user_agent.original", T),
        (S, "http.method", T),
        (S, "http.status_code", I),
        (S, "http.url", T),
        (S, "http.target", T),
        (S, "net.peer.name", T),
        (S, "peer.service", T),
        (S, "error.type", T),
        // Databases
        (S, "db.system", T),
        (S, "db.system.name", T),
        (S, "db.operation", T),
        (S, "db.operation.name", T),
        (S, "db.name", T),
        (S, "db.namespace", T),
        (S, "db.collection.name", T),
        // RPC
        (S, "rpc.system", T),
        (S, "rpc.service", T),
        (S, "rpc.method", T),
        (S, "rpc.grpc.status_code", I),
        // Messaging
        (S, "messaging.system", T),
        (S, "messaging.operation", T),
        (S, "messaging.operation.type", T),
        (S, "messaging.destination.name", T),
        // Resources
        (R, "service.namespace", T),
        (R, "service.version", T),
        (R, "service.instance.id", T),
        (R, "deployment.environment", T),
        (R, "deployment.environment.name", T),
        (R, "k8s.cluster.name", T),
        (R, "k8s.namespace.name", T),
        (R, "k8s.pod.name", T),
        (R, "k8s.container.name", T),
        (R, "k8s.deployment.name", T),
        (R, "k8s.node.name", T),
        (R, "cloud.provider", T),
        (R, "cloud.region", T),
        (R, "host.name", T),
        (R, "telemetry.sdk.language", T),
    ]
};

/// Most automatically chosen span-attribute columns per block.
pub const AUTO_SPAN_COLUMNS: usize = 10;
/// Most automatically chosen resource-attribute columns per block.
pub const AUTO_RESOURCE_COLUMNS: usize = 5;
/// A key is chosen automatically only if at least this fraction of the
/// block's spans carry it: rarer keys gain little from a column.
pub const AUTO_MIN_FRACTION: f64 = 0.01;
/// ... and if at least this fraction of its values share one scalar type.
pub const AUTO_MIN_TYPE_FRACTION: f64 = 0.9;

/// How often a key occurs in a block, per value type: the input of
/// [`choose_dedicated`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// Values of each scalar type.
    pub by_type: HashMap<DedicatedType, u64>,
    /// Values of any other type (bytes, arrays, maps, empty).
    pub other: u64,
}

impl KeyCounts {
    /// All values.
    pub fn total(&self) -> u64 {
        self.by_type.values().sum::<u64>() + self.other
    }
}

/// Picks a block's dedicated columns: every well-known key present, plus up
/// to [`AUTO_SPAN_COLUMNS`] / [`AUTO_RESOURCE_COLUMNS`] other keys, the most
/// frequent first, that occur on at least [`AUTO_MIN_FRACTION`] of `spans`
/// and mostly with one scalar type. Ties are broken by key so the choice is
/// deterministic. The result is sorted by scope and key.
pub fn choose_dedicated(
    counts: &HashMap<(AttrScope, String), KeyCounts>,
    spans: u64,
) -> Vec<DedicatedColumn> {
    let mut chosen: Vec<DedicatedColumn> = Vec::new();
    for (scope, key, ty) in WELL_KNOWN {
        if counts
            .get(&(*scope, (*key).to_owned()))
            .is_some_and(|c| c.by_type.get(ty).copied().unwrap_or(0) > 0)
        {
            chosen.push(DedicatedColumn::new(*scope, *key, *ty));
        }
    }
    for (scope, limit) in [
        (AttrScope::Span, AUTO_SPAN_COLUMNS),
        (AttrScope::Resource, AUTO_RESOURCE_COLUMNS),
    ] {
        let mut candidates: Vec<(u64, &str, DedicatedType)> = counts
            .iter()
            .filter(|((s, key), _)| {
                *s == scope
                    && key.as_str() != crate::convert::SERVICE_NAME_KEY
                    && !WELL_KNOWN
                        .iter()
                        .any(|(ws, wk, _)| *ws == scope && wk == key)
            })
            .filter_map(|((_, key), c)| {
                let total = c.total();
                let (ty, n) = c
                    .by_type
                    .iter()
                    .max_by_key(|(ty, n)| (**n, std::cmp::Reverse(**ty)))?;
                let frequent = total as f64 >= spans as f64 * AUTO_MIN_FRACTION;
                let typed = *n as f64 >= total as f64 * AUTO_MIN_TYPE_FRACTION;
                (frequent && typed).then_some((total, key.as_str(), *ty))
            })
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        chosen.extend(
            candidates
                .into_iter()
                .take(limit)
                .map(|(_, key, ty)| DedicatedColumn::new(scope, key, ty)),
        );
    }
    chosen.sort_by(|a, b| (a.scope, &a.key).cmp(&(b.scope, &b.key)));
    chosen
}

/// What a reader needs to know about a block's `data.parquet`: its format
/// version and its dedicated columns.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockLayout {
    /// `meta.json`'s `format_version`.
    pub format_version: u32,
    /// Dedicated columns, in schema order.
    pub dedicated: Vec<DedicatedColumn>,
    schema: SchemaRef,
}

impl BlockLayout {
    /// The layout of a version-1 block: the canonical schema alone.
    pub fn v1() -> Self {
        Self {
            format_version: 1,
            dedicated: Vec::new(),
            schema: span_schema(),
        }
    }

    /// The layout of a block of the current version with these dedicated
    /// columns.
    pub fn current(dedicated: Vec<DedicatedColumn>) -> Self {
        Self::new(crate::meta::FORMAT_VERSION, dedicated)
    }

    /// A layout for `format_version` (1 or 2).
    pub fn new(format_version: u32, dedicated: Vec<DedicatedColumn>) -> Self {
        if format_version < 2 {
            return Self::v1();
        }
        let mut fields: Vec<Arc<Field>> = span_schema().fields().iter().cloned().collect();
        for name in structure::ALL {
            fields.push(Arc::new(Field::new(name, DataType::Int32, false)));
        }
        fields.extend(dedicated.iter().map(|d| Arc::new(d.field())));
        Self {
            format_version,
            dedicated,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// Whether the stored rows carry the structure columns.
    pub fn has_structure(&self) -> bool {
        self.format_version >= 2
    }

    /// The schema of `data.parquet`.
    pub fn stored_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The dedicated column for `key` in `scope`, if any.
    pub fn dedicated(&self, scope: AttrScope, key: &str) -> Option<&DedicatedColumn> {
        self.dedicated
            .iter()
            .find(|d| d.scope == scope && d.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(
        entries: &[(AttrScope, &str, DedicatedType, u64)],
    ) -> HashMap<(AttrScope, String), KeyCounts> {
        let mut out: HashMap<(AttrScope, String), KeyCounts> = HashMap::new();
        for (scope, key, ty, n) in entries {
            *out.entry((*scope, (*key).to_owned()))
                .or_default()
                .by_type
                .entry(*ty)
                .or_default() += n;
        }
        out
    }

    #[test]
    fn well_known_keys_present_and_frequent_others_are_chosen() {
        use AttrScope::*;
        use DedicatedType::*;
        let chosen = choose_dedicated(
            &counts(&[
                (Span, "http.route", String, 10),
                (Span, "http.response.status_code", Int, 10),
                // A well-known key seen only with another type gets no column.
                (Span, "http.method", Int, 10),
                (Span, "rand5", String, 900),
                (Span, "rare", String, 5),
                (Span, "mixed", String, 500),
                (Span, "mixed", Int, 500),
                (Resource, "k8s.pod.name", String, 1000),
                (Resource, "service.name", String, 1000),
                (Resource, "team", String, 1000),
            ]),
            1000,
        );
        let names: Vec<std::string::String> =
            chosen.iter().map(DedicatedColumn::column_name).collect();
        assert_eq!(
            names,
            [
                "resource.k8s.pod.name",
                "resource.team",
                "span.http.response.status_code",
                "span.http.route",
                "span.rand5",
            ]
        );
    }

    #[test]
    fn stored_schema_appends_structure_then_dedicated_columns() {
        let layout = BlockLayout::current(vec![DedicatedColumn::new(
            AttrScope::Span,
            "http.route",
            DedicatedType::String,
        )]);
        let schema = layout.stored_schema();
        let canonical = span_schema().fields().len();
        assert_eq!(schema.field(canonical).name(), structure::NESTED_SET_LEFT);
        assert_eq!(schema.field(canonical + 4).name(), "span.http.route");
        assert_eq!(BlockLayout::v1().stored_schema(), span_schema());
    }
}
