//! A segment budget shared by several memories (a guest's, in the host) gets back every byte
//! when a memory is dropped, whatever segments it still had.

mod common;

use std::alloc::Layout;
use std::sync::Arc;

use common::Env;
use resmem::{AllocationStrategy, ByteBudget, Memory, SegmentBudget};

#[test]
fn dropping_memories_returns_their_bytes_to_a_shared_budget() {
    let env = Env::posix();
    let budget = Arc::new(ByteBudget::new(64 << 20));
    for round in 0..20 {
        let memories: Vec<Memory> = (0..3)
            .map(|i| {
                env.builder(&format!("b{round}x{i}"))
                    .max_chunk_layout_hint(Layout::from_size_align(64, 8).unwrap())
                    .max_number_of_chunks_hint(2)
                    .allocation_strategy(AllocationStrategy::PowerOfTwo)
                    .budget(Arc::clone(&budget) as Arc<dyn SegmentBudget>)
                    .create()
                    .expect("create within the budget")
            })
            .collect();
        for memory in &memories {
            // Chunks in three segments, all still allocated at the drop.
            for size in [64, 8192, 65536] {
                memory
                    .allocate(Layout::from_size_align(size, 8).unwrap())
                    .expect("allocate within the budget");
            }
            assert!(memory.number_of_active_segments() >= 3);
        }
        assert!(
            budget.used() > 3 * 65536,
            "round {round}: {}",
            budget.used()
        );
        drop(memories);
        assert_eq!(budget.used(), 0, "round {round}: bytes not returned");
    }
}
