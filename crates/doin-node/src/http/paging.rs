//! Query parsing and the pagination rules shared by the list endpoints.
//!
//! Every list is bounded: a request names a page with `limit` and `offset` (or a height
//! range with `from` and `to`), each endpoint documents its default and maximum, and a
//! request over a maximum is a 400 (`limit_too_large`, `offset_too_large`,
//! `range_too_large`) rather than a silently shortened page, so a client never mistakes a
//! truncated answer for a complete one.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;

use super::error::{ApiError, ApiResult};

/// The query string as `T`, or a JSON 400 saying what is wrong with it.
pub(super) fn parse_query<T>(query: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// A validated `limit`/`offset` page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Page {
    pub(super) limit: usize,
    pub(super) offset: usize,
}

/// Rules of one endpoint's `limit`/`offset` page.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageRules {
    pub(super) default_limit: usize,
    pub(super) max_limit: usize,
    /// Bounds the work a deep page costs (the skipped entries are still walked).
    pub(super) max_offset: usize,
}

impl PageRules {
    /// The page asked for, with the default limit filled in, or why it is refused.
    pub(super) fn page(&self, limit: Option<usize>, offset: Option<usize>) -> ApiResult<Page> {
        let limit = limit.unwrap_or(self.default_limit);
        if limit > self.max_limit {
            return Err(ApiError::bad_request(
                "limit_too_large",
                format!("limit is at most {}, got {limit}", self.max_limit),
            ));
        }
        let offset = offset.unwrap_or(0);
        if offset > self.max_offset {
            return Err(ApiError::bad_request(
                "offset_too_large",
                format!("offset is at most {}, got {offset}", self.max_offset),
            ));
        }
        Ok(Page { limit, offset })
    }
}

/// An inclusive height range from optional `from`/`to`: by default the `default_span` blocks
/// ending at the tip; one bound alone extends `default_span` blocks from it. Refused when
/// `from > to` or when it spans more than `max_span` blocks. It may reach above the tip: the
/// caller clamps it.
pub(super) fn height_range(
    from: Option<u64>,
    to: Option<u64>,
    tip: u64,
    default_span: u64,
    max_span: u64,
) -> ApiResult<(u64, u64)> {
    let span = default_span.saturating_sub(1);
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => (from, from.saturating_add(span).min(tip.max(from))),
        (None, Some(to)) => (to.saturating_sub(span), to),
        (None, None) => (tip.saturating_sub(span), tip),
    };
    if from > to {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("from ({from}) is above to ({to})"),
        ));
    }
    if to - from >= max_span {
        return Err(ApiError::bad_request(
            "range_too_large",
            format!(
                "at most {max_span} blocks per request; {from}..={to} is {} blocks",
                u128::from(to - from) + 1
            ),
        ));
    }
    Ok((from, to))
}

/// A `?blocks=` count of recent blocks, default `default`, at most `max`.
pub(super) fn recent_blocks(blocks: Option<u64>, default: u64, max: u64) -> ApiResult<u64> {
    let n = blocks.unwrap_or(default);
    if n > max {
        return Err(ApiError::bad_request(
            "limit_too_large",
            format!("blocks is at most {max}, got {n}"),
        ));
    }
    Ok(n)
}

/// The stored receipts of heights `from..=to`, cut at the tip (none when `from` is above it).
pub(super) async fn receipts_to_tip(
    store: &crate::storage::Store,
    from: u64,
    to: u64,
    tip: u64,
) -> ApiResult<Vec<crate::storage::ReceiptRecord>> {
    if from > tip {
        return Ok(Vec::new());
    }
    store
        .receipts(from, to.min(tip))
        .await
        .map_err(|e| ApiError::internal(&e))
}

#[cfg(test)]
mod unit {
    use super::*;

    const RULES: PageRules = PageRules {
        default_limit: 20,
        max_limit: 100,
        max_offset: 1000,
    };

    #[test]
    fn pages_default_and_refuse_oversize() {
        assert_eq!(
            RULES.page(None, None).unwrap(),
            Page {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(RULES.page(Some(100), Some(1000)).unwrap().limit, 100);
        assert_eq!(
            RULES.page(Some(101), None).unwrap_err().code,
            "limit_too_large"
        );
        assert_eq!(
            RULES.page(None, Some(1001)).unwrap_err().code,
            "offset_too_large"
        );
    }

    #[test]
    fn height_ranges() {
        assert_eq!(height_range(None, None, 5, 20, 100).unwrap(), (0, 5));
        assert_eq!(height_range(None, None, 50, 20, 100).unwrap(), (31, 50));
        assert_eq!(height_range(Some(3), None, 50, 20, 100).unwrap(), (3, 22));
        assert_eq!(height_range(None, Some(10), 50, 20, 100).unwrap(), (0, 10));
        assert_eq!(
            height_range(Some(4), Some(3), 50, 20, 100)
                .unwrap_err()
                .code,
            "invalid_range"
        );
        assert_eq!(
            height_range(Some(0), Some(u64::MAX), 50, 20, 100)
                .unwrap_err()
                .code,
            "range_too_large"
        );
    }
}
