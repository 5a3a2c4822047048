//! The ingester's Prometheus metrics (recorded through the `metrics` facade;
//! the binary installs the exporter behind `/metrics`).

use strata_common::{BlockMeta, TenantId};

pub(crate) fn spans_received(tenant: &TenantId, spans: usize) {
    metrics::counter!("strata_ingester_spans_received_total", "tenant" => tenant.to_string())
        .increment(spans as u64);
}

pub(crate) fn spans_rejected(tenant: &TenantId, spans: usize, reason: &'static str) {
    metrics::counter!(
        "strata_ingester_spans_rejected_total",
        "tenant" => tenant.to_string(),
        "reason" => reason
    )
    .increment(spans as u64);
}

pub(crate) fn request(protocol: &'static str, outcome: &'static str) {
    metrics::counter!(
        "strata_ingester_requests_total",
        "protocol" => protocol,
        "outcome" => outcome
    )
    .increment(1);
}

pub(crate) fn live_bytes(bytes: usize) {
    metrics::gauge!("strata_ingester_live_bytes").set(bytes as f64);
}

pub(crate) fn attribute_values_truncated(tenant: &TenantId, values: usize) {
    metrics::counter!(
        "strata_ingester_attribute_values_truncated_total",
        "tenant" => tenant.to_string()
    )
    .increment(values as u64);
}

pub(crate) fn block_written(tenant: &TenantId, meta: &BlockMeta) {
    let tenant = tenant.to_string();
    metrics::counter!("strata_blocks_written_total", "tenant" => tenant.clone()).increment(1);
    metrics::counter!("strata_block_bytes_written_total", "tenant" => tenant.clone())
        .increment(meta.data_size_bytes + meta.bloom_size_bytes);
    metrics::counter!("strata_block_spans_written_total", "tenant" => tenant)
        .increment(meta.span_count);
}

pub(crate) fn block_write_failed(tenant: &TenantId) {
    metrics::counter!("strata_block_write_failures_total", "tenant" => tenant.to_string())
        .increment(1);
}
