//! Tempo's search and tag routes over HTTP:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /api/search` | `SearchResponse` (JSON, or protobuf by `Accept`) |
//! | `GET /api/search/tags` | `{"tagNames": [...]}` |
//! | `GET /api/v2/search/tags` | `{"scopes": [{"name", "tags"}]}` |
//! | `GET /api/search/tag/<tag>/values` | `{"tagValues": ["..."]}` |
//! | `GET /api/v2/search/tag/<tag>/values` | `{"tagValues": [{"type", "value"}]}` |
//!
//! Parameters, defaults and error texts follow Tempo (`pkg/api/http.go`);
//! errors are plain-text bodies with the status of [`Error::http_status`]
//! (400 for anything wrong with the request). The request parsing here is
//! shared with the gRPC streaming API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use prost::Message;
use strata_common::{ATTRIBUTE_SCOPES, TenantId};

use crate::api::{Format, json_response, protobuf_response, tenant, timed};
use crate::error::Error;
use crate::search::{INTRINSIC_TAGS, METRICS_REFUSED, SearchOutcome, SearchRequest, TagValue};
use crate::trace_by_id::TimeRange;
use crate::traceql::ast::{AttributeScope, FieldExpr};
use crate::traceql::{self, ParseError};
use crate::{Querier, tempo_json, tempopb, wire};

/// Traces returned when the request names no limit.
pub(crate) const DEFAULT_LIMIT: u32 = 20;
/// The most traces one search may return.
pub(crate) const MAX_LIMIT: u32 = 262_144;
/// Spans per spanset when the request names none.
pub(crate) const DEFAULT_SPSS: u32 = 3;
/// The most spans per spanset.
pub(crate) const MAX_SPSS: u32 = 100;
/// The most values one tag-values answer holds, whatever the request's
/// limit (Tempo bounds these answers by bytes,
/// `max_bytes_per_tag_values_query`; a count is simpler to reason about).
pub(crate) const MAX_TAG_VALUES: usize = 1_000;
/// Longest query text accepted.
pub(crate) const MAX_QUERY_BYTES: usize = 128 * 1024;

pub(crate) fn router(querier: Arc<Querier>) -> Router {
    Router::new()
        .route("/api/search", get(search))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{*rest}", get(tag_values_v1))
        .route("/api/v2/search/tag/{*rest}", get(tag_values_v2))
        .with_state(querier)
}

fn bad(message: impl Into<String>) -> Error {
    Error::BadRequest(message.into())
}

fn invalid_query(e: &ParseError) -> Error {
    bad(format!("invalid TraceQL query: {e}"))
}

/// Parses a Unix-seconds parameter; empty counts as absent.
fn seconds(name: &str, value: Option<&str>) -> Result<Option<u32>, Error> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u32>().map_err(|e| {
                bad(format!(
                    "invalid {name}: strconv.ParseUint: parsing {v:?}: {e}"
                ))
            })
        })
        .transpose()
}

/// The time range of `start`/`end` (Unix seconds, 0 = absent).
pub(crate) fn time_range(start: u32, end: u32) -> Result<Option<TimeRange>, Error> {
    if start == 0 && end == 0 {
        return Ok(None);
    }
    if end <= start {
        return Err(bad(format!(
            "http parameter start must be before end. received start={start} end={end}"
        )));
    }
    Ok(Some(TimeRange {
        start_unix_nano: u64::from(start) * 1_000_000_000,
        end_unix_nano: u64::from(end) * 1_000_000_000 + 999_999_999,
    }))
}

/// Refuses query text over [`MAX_QUERY_BYTES`], as Tempo does.
fn check_query_size(query: &str) -> Result<(), Error> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(bad(format!(
            "TraceQL expression exceeds the configured maximum size of {MAX_QUERY_BYTES} bytes, reduce the query expression size"
        )));
    }
    Ok(())
}

/// A search as Tempo's `SearchRequest` describes it, checked.
pub(crate) fn search_request(request: &tempopb::SearchRequest) -> Result<SearchRequest, Error> {
    check_query_size(&request.query)?;
    let limit = match request.limit {
        0 => DEFAULT_LIMIT,
        n if n > MAX_LIMIT => return Err(bad(format!("limit {n} exceeds max limit {MAX_LIMIT}"))),
        n => n,
    };
    let spss = match request.spans_per_span_set {
        0 => DEFAULT_SPSS,
        n if n > MAX_SPSS => {
            return Err(bad(format!(
                "spans per span set exceeds {MAX_SPSS}. received {n}"
            )));
        }
        n => n,
    };
    let text = if request.query.trim().is_empty() {
        tags_query(
            &request.tags,
            request.min_duration_ms,
            request.max_duration_ms,
        )?
    } else {
        request.query.clone()
    };
    let query = traceql::parse(&text).map_err(|e| invalid_query(&e))?;
    if query.metrics.is_some() {
        return Err(bad(METRICS_REFUSED));
    }
    Ok(SearchRequest {
        query,
        limit: limit as usize,
        spans_per_spanset: spss as usize,
        range: time_range(request.start, request.end)?,
    })
}

/// Tempo's older tag search (`tags=k=v ...`, `minDuration`, `maxDuration`)
/// as TraceQL: each tag a case-insensitive substring match on the
/// attribute of any scope, durations on the trace.
fn tags_query(tags: &HashMap<String, String>, min_ms: u32, max_ms: u32) -> Result<String, Error> {
    let mut conditions: Vec<String> = Vec::new();
    let mut keys: Vec<&String> = tags.keys().collect();
    keys.sort();
    for key in keys {
        let value = &tags[key];
        let pattern = format!("(?i).*{}.*", regex::escape(value));
        let attribute = traceql::display::attribute(&traceql::ast::Attribute {
            scope: AttributeScope::Unscoped,
            parent: false,
            name: key.clone(),
        });
        let condition = match key.as_str() {
            "name" => format!("name =~ {}", traceql::display::quote(&pattern)),
            "status.code" => match value.as_str() {
                "error" | "ok" | "unset" => format!("status = {value}"),
                _ => {
                    return Err(bad(format!(
                        "invalid tags: status.code must be error, ok or unset, got {value:?}"
                    )));
                }
            },
            "error" if value == "true" => "status = error".to_owned(),
            _ => format!("{attribute} =~ {}", traceql::display::quote(&pattern)),
        };
        conditions.push(condition);
    }
    if min_ms > 0 {
        conditions.push(format!("traceDuration >= {min_ms}ms"));
    }
    if max_ms > 0 {
        conditions.push(format!("traceDuration <= {max_ms}ms"));
    }
    Ok(if conditions.is_empty() {
        "{ }".to_owned()
    } else {
        format!("{{ {} }}", conditions.join(" && "))
    })
}

/// Parses logfmt `k=v k2="v 2"` as Tempo's `tags` parameter.
fn logfmt(text: &str) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.peek().copied() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut key = String::new();
        while let Some(c) = chars.peek().copied() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek().is_some_and(|c| *c == '=') {
            chars.next();
            if chars.peek().is_some_and(|c| *c == '"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            if let Some(next) = chars.next() {
                                value.push(next);
                            }
                        }
                        _ => value.push(c),
                    }
                }
                if !closed {
                    return Err(bad("invalid tags: unterminated quoted value"));
                }
            } else {
                while let Some(c) = chars.peek().copied() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        if key.is_empty() {
            return Err(bad("invalid tags: a tag has no name"));
        }
        if out.insert(key.clone(), value).is_some() {
            return Err(bad(format!("invalid tags: tag {key} has been set twice")));
        }
    }
    Ok(out)
}

fn parse_duration_ms(name: &str, value: Option<&String>) -> Result<u32, Error> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let nanos = traceql::parse_go_duration(value)
        .ok_or_else(|| bad(format!("invalid {name}: time: invalid duration {value:?}")))?;
    Ok(u32::try_from(nanos / 1_000_000).unwrap_or(u32::MAX))
}

/// `/api/search` parameters as a `SearchRequest`.
fn search_params(params: &HashMap<String, String>) -> Result<tempopb::SearchRequest, Error> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let query = get("q").or_else(|| get("query")).unwrap_or("").to_owned();
    let tags = match get("tags") {
        Some(text) => {
            if !query.is_empty() {
                return Err(bad(
                    "invalid request: can't specify tags and q in the same query",
                ));
            }
            logfmt(text)?
        }
        None => HashMap::new(),
    };
    let min = parse_duration_ms("minDuration", params.get("minDuration"))?;
    let max = parse_duration_ms("maxDuration", params.get("maxDuration"))?;
    if max > 0 && min > max {
        return Err(bad("invalid maxDuration: must be greater than minDuration"));
    }
    let limit = match get("limit") {
        None => 0,
        Some(v) => match v.parse::<u32>() {
            Ok(0) => return Err(bad("invalid limit: must be a positive number")),
            Ok(n) => n,
            Err(e) => {
                return Err(bad(format!(
                    "invalid limit: strconv.ParseUint: parsing {v:?}: {e}"
                )));
            }
        },
    };
    let spss = match get("spss") {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|e| {
            bad(format!(
                "invalid spss: strconv.ParseUint: parsing {v:?}: {e}"
            ))
        })?,
    };
    Ok(tempopb::SearchRequest {
        tags,
        min_duration_ms: min,
        max_duration_ms: max,
        limit,
        start: seconds("start", get("start"))?.unwrap_or(0),
        end: seconds("end", get("end"))?.unwrap_or(0),
        query,
        spans_per_span_set: spss,
        ..tempopb::SearchRequest::default()
    })
}

async fn run_search(
    querier: &Arc<Querier>,
    tenant: TenantId,
    request: SearchRequest,
) -> Result<SearchOutcome, Error> {
    let searcher = Arc::clone(querier.searcher());
    querier
        .run_query(async move { searcher.search(&tenant, request, None).await })
        .await?
}

async fn search(
    State(querier): State<Arc<Querier>>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    timed("search", async {
        let tenant = tenant(&headers)?;
        let request = search_request(&search_params(&params)?)?;
        let outcome = run_search(&querier, tenant, request).await?;
        let response = wire::search_response(&outcome.traces, &outcome.metrics);
        Ok(match Format::from_headers(&headers) {
            Format::Json => json_response(&tempo_json::search_response(&response)),
            Format::Protobuf => protobuf_response(response.encode_to_vec()),
        })
    })
    .await
}

/// Which scopes a tags request covers.
pub(crate) fn tag_scopes(scope: &str) -> Result<(Vec<&'static str>, bool), Error> {
    match scope {
        "" | "none" => Ok((ATTRIBUTE_SCOPES.to_vec(), true)),
        "intrinsic" => Ok((Vec::new(), true)),
        // Tempo accepts `trace` but holds no attributes there.
        "trace" => Ok((Vec::new(), false)),
        s => ATTRIBUTE_SCOPES
            .iter()
            .find(|known| **known == s)
            .map(|known| (vec![*known], false))
            .ok_or_else(|| bad(format!("invalid scope: {s}"))),
    }
}

fn limit_param(params: &HashMap<String, String>, name: &str) -> usize {
    // Tempo reads these leniently: anything unparsable is "no limit".
    params
        .get(name)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(usize::MAX)
}

fn range_params(params: &HashMap<String, String>) -> Result<Option<TimeRange>, Error> {
    let get = |name: &str| params.get(name).map(String::as_str);
    time_range(
        seconds("start", get("start"))?.unwrap_or(0),
        seconds("end", get("end"))?.unwrap_or(0),
    )
}

/// Tag names per scope, v2 shape. `v1` flattens them.
pub(crate) async fn tag_names(
    querier: &Arc<Querier>,
    tenant: TenantId,
    scope: &str,
    query: &str,
    range: Option<TimeRange>,
    limit: usize,
) -> Result<tempopb::SearchTagsV2Response, Error> {
    let (scopes, intrinsic) = tag_scopes(scope)?;
    check_query_size(query)?;
    let filter = traceql::lenient_filter(query);
    if let Some(filter) = &filter {
        check_condition_groups(filter)?;
    }
    let searcher = Arc::clone(querier.searcher());
    let names = querier
        .run_query(async move { searcher.tag_names(&tenant, filter, range).await })
        .await??;
    let mut out = Vec::new();
    for s in scopes {
        if let Some(tags) = names.get(s) {
            out.push(tempopb::SearchTagsV2Scope {
                name: s.to_owned(),
                tags: tags.iter().take(limit).cloned().collect(),
            });
        }
    }
    if intrinsic {
        out.push(tempopb::SearchTagsV2Scope {
            name: "intrinsic".to_owned(),
            tags: INTRINSIC_TAGS.iter().map(|s| (*s).to_owned()).collect(),
        });
    }
    Ok(tempopb::SearchTagsV2Response {
        scopes: out,
        metrics: Some(tempopb::MetadataMetrics::default()),
    })
}

async fn tags_v1(
    State(querier): State<Arc<Querier>>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    timed("search_tags", async {
        let tenant = tenant(&headers)?;
        let scope = params.get("scope").map(String::as_str).unwrap_or("");
        let v2 = tag_names(
            &querier,
            tenant,
            scope,
            "",
            range_params(&params)?,
            usize::MAX,
        )
        .await?;
        let response = tags_v1_response(&v2, scope, limit_param(&params, "limit"));
        Ok(match Format::from_headers(&headers) {
            Format::Json => json_response(&tempo_json::tags_response(&response)),
            Format::Protobuf => protobuf_response(response.encode_to_vec()),
        })
    })
    .await
}

/// Flattens v2 scopes into v1's sorted name list: intrinsics only when
/// asked for by `scope=intrinsic`, as in Tempo.
pub(crate) fn tags_v1_response(
    v2: &tempopb::SearchTagsV2Response,
    scope: &str,
    limit: usize,
) -> tempopb::SearchTagsResponse {
    let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for s in &v2.scopes {
        if s.name == "intrinsic" && scope != "intrinsic" {
            continue;
        }
        names.extend(s.tags.iter().cloned());
    }
    tempopb::SearchTagsResponse {
        tag_names: names.into_iter().take(limit).collect(),
        metrics: Some(tempopb::MetadataMetrics::default()),
    }
}

async fn tags_v2(
    State(querier): State<Arc<Querier>>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    timed("search_tags_v2", async {
        let tenant = tenant(&headers)?;
        let scope = params.get("scope").map(String::as_str).unwrap_or("");
        let query = params.get("q").map(String::as_str).unwrap_or("");
        let response = tag_names(
            &querier,
            tenant,
            scope,
            query,
            range_params(&params)?,
            limit_param(&params, "limit"),
        )
        .await?;
        Ok(match Format::from_headers(&headers) {
            Format::Json => json_response(&tempo_json::tags_v2_response(&response)),
            Format::Protobuf => protobuf_response(response.encode_to_vec()),
        })
    })
    .await
}

/// A v2 tag name: a TraceQL attribute or intrinsic. Grafana encodes the
/// path segment twice and the router decodes once, so a name that still
/// holds an encoded quote (`%22`: names with special characters are always
/// quoted in TraceQL) or that does not parse is decoded once more.
pub(crate) fn v2_tag(name: &str) -> Result<FieldExpr, Error> {
    if name.is_empty() {
        return Err(bad("please provide a non-empty tagName"));
    }
    let decoded = percent_encoding::percent_decode_str(name).decode_utf8();
    if name.contains("%22")
        && let Ok(decoded) = &decoded
        && let Ok(tag) = traceql::parse_identifier(decoded)
    {
        return Ok(tag);
    }
    match traceql::parse_identifier(name) {
        Ok(tag) => Ok(tag),
        Err(first) => {
            if let Ok(decoded) = &decoded
                && decoded != name
                && let Ok(tag) = traceql::parse_identifier(decoded)
            {
                return Ok(tag);
            }
            Err(bad(format!(
                "please provide a valid tagName: failed to parse identifier {name}: {first}"
            )))
        }
    }
}

/// The values of a v1 tag name (any attribute key, span then resource),
/// sorted, with Tempo's virtual values: `status.code` lists the status
/// keywords and `error` lists `true`, besides any real attribute values.
pub(crate) async fn v1_tag_values(
    querier: &Arc<Querier>,
    tenant: TenantId,
    name: &str,
    range: Option<TimeRange>,
    limit: usize,
) -> Result<Vec<TagValue>, Error> {
    if name.is_empty() {
        return Err(bad("please provide a non-empty tagName"));
    }
    let tag = FieldExpr::Attribute(traceql::ast::Attribute {
        scope: AttributeScope::Unscoped,
        parent: false,
        name: name.to_owned(),
    });
    let mut values = tag_values(querier, tenant, tag, "", range, limit).await?;
    let virtual_values: &[&str] = match name {
        "status.code" => &["error", "ok", "unset"],
        "error" => &["true"],
        _ => &[],
    };
    for v in virtual_values {
        if !values.iter().any(|x| x.value == *v) {
            values.push(TagValue {
                kind: "string",
                value: (*v).to_owned(),
            });
        }
    }
    values.sort_by(|a, b| a.value.cmp(&b.value));
    values.truncate(limit);
    Ok(values)
}

/// The values of a tag.
pub(crate) async fn tag_values(
    querier: &Arc<Querier>,
    tenant: TenantId,
    tag: FieldExpr,
    query: &str,
    range: Option<TimeRange>,
    limit: usize,
) -> Result<Vec<TagValue>, Error> {
    check_query_size(query)?;
    let filter = traceql::lenient_filter(query);
    if let Some(filter) = &filter {
        check_condition_groups(filter)?;
    }
    let searcher = Arc::clone(querier.searcher());
    querier
        .run_query(async move {
            searcher
                .tag_values(&tenant, &tag, filter, range, limit)
                .await
        })
        .await?
}

/// Tempo refuses tag filters that expand to more than 100 alternatives
/// (`max_condition_groups_per_tag_query`): each costs a scan.
const MAX_CONDITION_GROUPS: u64 = 100;

fn check_condition_groups(filter: &FieldExpr) -> Result<(), Error> {
    fn groups(e: &FieldExpr) -> u64 {
        match e {
            FieldExpr::Binary(traceql::ast::BinaryOp::Or, l, r) => {
                groups(l).saturating_add(groups(r))
            }
            FieldExpr::Binary(traceql::ast::BinaryOp::And, l, r) => {
                groups(l).saturating_mul(groups(r))
            }
            _ => 1,
        }
    }
    if groups(filter) > MAX_CONDITION_GROUPS {
        return Err(bad(format!(
            "maximum condition groups reached (limit: {MAX_CONDITION_GROUPS}). Reduce the number of OR conditions in the query"
        )));
    }
    Ok(())
}

fn tag_from_rest(rest: &str) -> Result<&str, Error> {
    rest.strip_suffix("/values")
        .ok_or_else(|| bad("expected /api/search/tag/<tag>/values"))
}

async fn tag_values_v1(
    State(querier): State<Arc<Querier>>,
    Path(rest): Path<String>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    timed("search_tag_values", async {
        let tenant = tenant(&headers)?;
        let name = tag_from_rest(&rest)?;
        let limit = limit_param(&params, "limit").min(MAX_TAG_VALUES);
        let values = v1_tag_values(&querier, tenant, name, range_params(&params)?, limit).await?;
        let response = wire::tag_values_v1(&values);
        Ok(match Format::from_headers(&headers) {
            Format::Json => json_response(&tempo_json::tag_values_response(&response)),
            Format::Protobuf => protobuf_response(response.encode_to_vec()),
        })
    })
    .await
}

async fn tag_values_v2(
    State(querier): State<Arc<Querier>>,
    Path(rest): Path<String>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    timed("search_tag_values_v2", async {
        let tenant = tenant(&headers)?;
        let tag = v2_tag(tag_from_rest(&rest)?)?;
        let limit = limit_param(&params, "limit").min(MAX_TAG_VALUES);
        let query = params.get("q").map(String::as_str).unwrap_or("");
        let values =
            tag_values(&querier, tenant, tag, query, range_params(&params)?, limit).await?;
        let response = wire::tag_values_v2(&values);
        Ok(match Format::from_headers(&headers) {
            Format::Json => json_response(&tempo_json::tag_values_v2_response(&response)),
            Format::Protobuf => protobuf_response(response.encode_to_vec()),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_tags_become_traceql() {
        let tags = logfmt(r#"service.name=api http.method="GET /x" name=login"#).unwrap();
        assert_eq!(tags["http.method"], "GET /x");
        let q = tags_query(&tags, 10, 0).unwrap();
        assert!(traceql::parse(&q).is_ok(), "{q}");
        assert!(q.contains("traceDuration >= 10ms"), "{q}");
        assert!(logfmt("a=1 a=2").is_err());
        let status = |v: &str| {
            tags_query(
                &HashMap::from([("status.code".to_owned(), v.to_owned())]),
                0,
                0,
            )
        };
        assert_eq!(status("error").unwrap(), "{ status = error }");
        assert!(status("error } || { true").is_err());
    }

    #[test]
    fn durations_parse_as_go_does() {
        let ms = |v: &str| parse_duration_ms("minDuration", Some(&v.to_owned()));
        assert_eq!(ms("0").unwrap(), 0);
        assert_eq!(ms("1.5s").unwrap(), 1_500);
        assert_eq!(ms("1h1m").unwrap(), 3_660_000);
        assert!(ms("1d").is_err(), "Go has no days");
        assert!(ms("10").is_err(), "a unit is needed");
    }

    #[test]
    fn limits_and_ranges_are_checked() {
        let request = |limit, spss, start, end| tempopb::SearchRequest {
            query: "{ }".into(),
            limit,
            spans_per_span_set: spss,
            start,
            end,
            ..tempopb::SearchRequest::default()
        };
        let ok = search_request(&request(0, 0, 0, 0)).unwrap();
        assert_eq!((ok.limit, ok.spans_per_spanset), (20, 3));
        assert!(search_request(&request(MAX_LIMIT + 1, 0, 0, 0)).is_err());
        assert!(search_request(&request(0, 101, 0, 0)).is_err());
        assert!(search_request(&request(0, 0, 20, 10)).is_err());
        assert!(
            search_request(&request(0, 0, 20, 0)).is_err(),
            "start without end"
        );
        assert!(
            search_request(&request(0, 0, 10, 20))
                .unwrap()
                .range
                .is_some()
        );
    }

    #[test]
    fn tag_names_decode_grafanas_double_encoding() {
        assert!(v2_tag("resource.service.name").is_ok());
        // `span."a b"` encoded twice arrives decoded once.
        let tag = v2_tag("span.%22a%20b%22").unwrap();
        assert_eq!(traceql::display::field(&tag), r#"span."a b""#);
        assert_eq!(
            traceql::display::field(&v2_tag("resource.service.name").unwrap()),
            "resource.service.name"
        );
        assert!(v2_tag("nope nope").is_err());
        assert!(v2_tag("").is_err());
    }
}
