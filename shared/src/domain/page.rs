//! Cursor pagination: `?limit=` (1-100) and an opaque `?cursor=`; the same cursor format on
//! every backend (the last item's sort key, base64url), so a client cannot tell them apart.

use super::ValidationError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The largest page.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items at most.
    pub limit: u32,
    /// Continue after this sort key (decoded from the client's cursor).
    pub after: Option<String>,
}

impl PageRequest {
    /// Validates `limit` and decodes `cursor`.
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, ValidationError> {
        let limit = match limit {
            None => DEFAULT_PAGE_SIZE,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| ValidationError::new("limit", "must be 1 to 100"))?,
        };
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(cursor) => Some(decode(cursor).ok_or_else(|| {
                ValidationError::new("cursor", "is not a cursor this API issued")
            })?),
        };
        Ok(Self { limit, after })
    }

    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }
}

fn decode(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let key = String::from_utf8(bytes).ok()?;
    (!key.is_empty() && key.len() <= 200).then_some(key)
}

/// One page of results and the cursor to the next, if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page whose successor starts after the sort key `next_after`, if any.
    pub fn new(items: Vec<T>, next_after: Option<String>) -> Self {
        Self {
            items,
            next_cursor: next_after.map(|key| URL_SAFE_NO_PAD.encode(key)),
        }
    }

    /// Builds a page from up to `limit + 1` fetched items: the extra one only proves there is
    /// a next page, whose cursor is the sort key of the last item kept.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32, sort_key: impl Fn(&T) -> String) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_after = items.last().filter(|_| more).map(sort_key);
        Self::new(items, next_after)
    }

    /// The request for the page after this one, of `limit` items; `None` on the last page.
    pub fn next(&self, limit: u32) -> Option<PageRequest> {
        let cursor = self.next_cursor.as_deref()?;
        PageRequest::parse(Some(limit.into()), Some(cursor)).ok()
    }

    /// Maps the items, keeping the cursor.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(
            PageRequest::parse(None, None).map(|p| p.limit),
            Ok(DEFAULT_PAGE_SIZE)
        );
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(101), None).is_err());
        assert!(PageRequest::parse(None, Some("%%%")).is_err());
        let page = Page::from_overfetch(vec!["a", "b", "c"], 2, |s| s.to_string());
        assert_eq!(page.items, vec!["a", "b"]);
        let cursor = page.next_cursor.expect("more");
        let next = PageRequest::parse(Some(2), Some(&cursor)).expect("own cursor");
        assert_eq!(next.after.as_deref(), Some("b"));
        assert!(
            Page::from_overfetch(vec!["a"], 2, |s| s.to_string())
                .next_cursor
                .is_none()
        );
    }
}
