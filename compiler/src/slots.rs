//! Which scratch slot holds each tensor the forward pass stores.
//!
//! A layer's output is needed only until the last layer that reads it has
//! run, so tensors whose lives do not overlap can share memory. Slots are
//! given in the order tensors are first written, each to the first slot
//! whose tensor is no longer needed (interval colouring by start, which uses
//! no more slots than tensors are ever alive at once), and a slot is as long
//! as the largest tensor it holds.

/// The statements, in order, where a stored tensor is first written and
/// last used (read, or added onto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Life {
    pub(crate) first: usize,
    pub(crate) last: usize,
}

/// What a statement of the forward pass does with the stored tensors: the
/// one it writes, and the one it reads (none when it reads the input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) writes: usize,
    pub(crate) reads: Option<usize>,
}

/// The life of each of `count` stored tensors over `statements`, in order:
/// from the first statement that touches it to the last; `result` lives to
/// the end, since it is read after the last statement.
pub(crate) fn lives(count: usize, statements: &[Access], result: usize) -> Vec<Life> {
    let end = statements.len();
    (0..count)
        .map(|index| {
            let uses = statements
                .iter()
                .enumerate()
                .filter(|(_, access)| access.writes == index || access.reads == Some(index))
                .map(|(at, _)| at);
            let first = uses.clone().min().unwrap_or(end);
            let last = uses
                .max()
                .unwrap_or(first)
                .max(if index == result { end } else { 0 });
            Life { first, last }
        })
        .collect()
}

/// Each tensor's slot, and each slot's length in values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SlotPlan {
    pub(crate) slot_of: Vec<usize>,
    pub(crate) lengths: Vec<usize>,
}

/// The plan for tensors of `sizes` values living `lives`, given in the order
/// they are first written.
pub(crate) fn plan(sizes: &[usize], lives: &[Life]) -> SlotPlan {
    // The last statement that uses each slot's current tensor.
    let mut busy_until: Vec<usize> = Vec::new();
    let mut lengths: Vec<usize> = Vec::new();
    let mut slot_of = Vec::with_capacity(sizes.len());
    for (&size, life) in sizes.iter().zip(lives) {
        // A tensor last used by the statement that writes this one is still
        // being read then, so its slot is free only after.
        let slot = match busy_until.iter().position(|&until| until < life.first) {
            Some(slot) => slot,
            None => {
                busy_until.push(0);
                lengths.push(0);
                busy_until.len() - 1
            }
        };
        busy_until[slot] = life.last;
        lengths[slot] = lengths[slot].max(size);
        slot_of.push(slot);
    }
    SlotPlan { slot_of, lengths }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain that reads the input, then each tensor the one before; a
    /// tensor lives from its writer to its reader, and the result to the end.
    #[test]
    fn a_tensor_lives_from_its_writer_to_its_last_reader_and_the_result_to_the_end() {
        let chain = [
            Access {
                writes: 0,
                reads: None,
            },
            Access {
                writes: 1,
                reads: Some(0),
            },
            Access {
                writes: 2,
                reads: Some(1),
            },
            // A residual add: tensor 1 is read again.
            Access {
                writes: 2,
                reads: Some(1),
            },
        ];
        assert_eq!(
            lives(3, &chain, 2),
            vec![life(0, 1), life(1, 3), life(2, 4)]
        );
    }

    fn life(first: usize, last: usize) -> Life {
        Life { first, last }
    }

    #[test]
    fn a_chain_of_layers_alternates_between_two_slots() {
        let plan = plan(
            &[10, 20, 5, 8],
            &[life(0, 1), life(1, 2), life(2, 3), life(3, 4)],
        );
        assert_eq!(plan.slot_of, [0, 1, 0, 1]);
        assert_eq!(plan.lengths, [10, 20]);
    }

    #[test]
    fn a_residual_input_keeps_its_slot_until_the_branch_has_read_it() {
        // base[1] (read by both branches of the module, the residual last),
        // the first separable output, and the module output the residual
        // branch is added onto.
        let module = plan(&[115, 230, 58], &[life(0, 3), life(1, 2), life(2, 4)]);
        assert_eq!(module.slot_of, [0, 1, 2]);
        // The next module's first output may then take the freed slot.
        let next = plan(
            &[115, 230, 58, 30],
            &[life(0, 3), life(1, 2), life(2, 6), life(4, 5)],
        );
        assert_eq!(next.slot_of, [0, 1, 2, 0]);
        assert_eq!(next.lengths, [115, 230, 58]);
    }

    #[test]
    fn no_two_tensors_alive_together_share_a_slot() {
        // Every pair of overlapping lives, over many random interval sets.
        let mut state = 0x2545_f491_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for _ in 0..500 {
            let count = 1 + next(12);
            let mut lives: Vec<Life> = (0..count)
                .map(|_| {
                    let first = next(20);
                    life(first, first + next(6))
                })
                .collect();
            lives.sort_by_key(|life| life.first);
            let sizes: Vec<usize> = (0..count).map(|_| 1 + next(100)).collect();
            let slots = plan(&sizes, &lives);
            for i in 0..count {
                assert!(slots.lengths[slots.slot_of[i]] >= sizes[i]);
                for j in i + 1..count {
                    let overlap =
                        lives[i].first <= lives[j].last && lives[j].first <= lives[i].last;
                    if overlap {
                        assert_ne!(
                            slots.slot_of[i], slots.slot_of[j],
                            "{:?} and {:?}",
                            lives[i], lives[j]
                        );
                    }
                }
            }
            // Never more slots than tensors alive at one statement.
            let most_alive = (0..30)
                .map(|at| {
                    lives
                        .iter()
                        .filter(|l| l.first <= at && at <= l.last)
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert!(slots.lengths.len() <= most_alive.max(1));
        }
    }
}
