//! Offsets of chunks to free once the publisher's lock is released: a few inline (the common
//! case, one per returned sample), more on the heap (a reclaimed subscriber's).

/// Chunks the record released, to hand back to the memory outside the state lock.
#[derive(Debug, Default)]
#[must_use = "dropping it leaks the chunks; pass it to Publisher::free"]
pub(crate) struct Freed {
    inline: [u64; 4],
    len: usize,
    more: Vec<u64>,
}

impl Freed {
    pub(crate) fn push(&mut self, offset: u64) {
        if self.len < self.inline.len() {
            self.inline[self.len] = offset;
            self.len += 1;
        } else {
            self.more.push(offset);
        }
    }

    pub(crate) fn extend(&mut self, offsets: impl IntoIterator<Item = u64>) {
        for offset in offsets {
            self.push(offset);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every offset, in the order pushed.
    pub(crate) fn drain(self) -> impl Iterator<Item = u64> {
        let Self { inline, len, more } = self;
        inline.into_iter().take(len).chain(more)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_every_offset_in_order() {
        let mut freed = super::Freed::default();
        assert!(freed.is_empty());
        freed.extend(1..=7);
        assert!(!freed.is_empty());
        assert_eq!(
            freed.drain().collect::<Vec<_>>(),
            (1..=7).collect::<Vec<_>>()
        );
    }
}
