//! Batches: one image per task, each worker thread with its own scratch
//! space, so nothing is allocated per image.

use rayon::prelude::*;

/// Runs `forward` on every input, writing `outputs[i]` for `inputs[i]`.
///
/// The batch is cut into one contiguous run of images per scratch space, and
/// the runs go to rayon's threads: with `scratches.len()` equal to the number of
/// threads, every thread works through its run with its own scratch. Returns
/// the number of images run, which is less than `inputs.len()` only when
/// `outputs` is shorter or there is no scratch space.
pub fn run_batch<I, O, S, F>(
    inputs: &[I],
    outputs: &mut [O],
    scratches: &mut [S],
    forward: F,
) -> usize
where
    I: Sync,
    O: Send,
    S: Send,
    F: Fn(&I, &mut S) -> O + Sync,
{
    let count = inputs.len().min(outputs.len());
    if count == 0 || scratches.is_empty() {
        return 0;
    }
    let run = count.div_ceil(scratches.len());
    inputs[..count]
        .par_chunks(run)
        .zip(outputs[..count].par_chunks_mut(run))
        .zip(scratches.par_iter_mut())
        .for_each(|((inputs, outputs), scratch)| {
            for (input, output) in inputs.iter().zip(outputs) {
                *output = forward(input, scratch);
            }
        });
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_gets_its_own_output_whatever_the_split() {
        let inputs: Vec<u32> = (0..37).collect();
        for threads in [1, 2, 3, 8, 40] {
            let mut outputs = vec![0u32; inputs.len()];
            let mut scratches = vec![0usize; threads];
            let done = run_batch(&inputs, &mut outputs, &mut scratches, |&x, calls| {
                *calls += 1;
                x * 10
            });
            assert_eq!(done, 37);
            assert_eq!(outputs, inputs.iter().map(|x| x * 10).collect::<Vec<_>>());
            assert_eq!(
                scratches.iter().sum::<usize>(),
                37,
                "each image used exactly one scratch"
            );
        }
        assert_eq!(
            run_batch(&inputs, &mut [0u32; 5], &mut [0usize; 2], |&x, _| x),
            5
        );
        assert_eq!(
            run_batch(&inputs, &mut [0u32; 5], &mut [0usize; 0], |&x, _| x),
            0
        );
    }
}
