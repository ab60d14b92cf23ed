//! The weight gradient of a 1x1 contraction: a sum of outer products of
//! input pixels and output-gradient pixels, the inner loop of every kernel
//! gradient (pointwise, and each tap of a full convolution).

use crate::isa::Arithmetic;

/// Input rows of the gradient block kept in registers.
const ROWS: usize = 4;

/// `gradient[ci][co] += sum over j < count of x(j)[ci] * g(j)[co]`, each
/// element summed in the order of `j`.
///
/// Blocked so that `ROWS` rows of 8 or 16 output channels of the gradient
/// stay in registers while every pair `(x(j), g(j))` streams past: one
/// load of `g` and `ROWS` broadcasts of `x` feed `ROWS` vector multiply-adds,
/// instead of a load and a store of the gradient per multiply-add.
#[inline(always)]
pub(crate) fn accumulate_outer_products<'a, A: Arithmetic, const CI: usize, const CO: usize>(
    count: usize,
    x: impl Fn(usize) -> &'a [f32; CI],
    g: impl Fn(usize) -> &'a [f32; CO],
    gradient: &mut [[f32; CO]; CI],
) {
    if CO.is_multiple_of(16) {
        blocked::<A, 16, CI, CO>(count, &x, &g, gradient);
    } else if CO.is_multiple_of(8) {
        blocked::<A, 8, CI, CO>(count, &x, &g, gradient);
    } else {
        for j in 0..count {
            let (x, g) = (x(j), g(j));
            for (row, &xi) in gradient.iter_mut().zip(x) {
                for (w, &gv) in row.iter_mut().zip(g) {
                    *w = A::mul_add(xi, gv, *w);
                }
            }
        }
    }
}

#[inline(always)]
fn blocked<'a, A: Arithmetic, const B: usize, const CI: usize, const CO: usize>(
    count: usize,
    x: &impl Fn(usize) -> &'a [f32; CI],
    g: &impl Fn(usize) -> &'a [f32; CO],
    gradient: &mut [[f32; CO]; CI],
) {
    for co in (0..CO).step_by(B) {
        let mut ci = 0;
        while ci + ROWS <= CI {
            let mut acc = [[0.0f32; B]; ROWS];
            for (i, acc) in acc.iter_mut().enumerate() {
                acc.copy_from_slice(&gradient[ci + i][co..co + B]);
            }
            for j in 0..count {
                let (xv, gv) = (x(j), &g(j)[co..co + B]);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let xi = xv[ci + i];
                    for (a, &gl) in acc.iter_mut().zip(gv) {
                        *a = A::mul_add(xi, gl, *a);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                gradient[ci + i][co..co + B].copy_from_slice(acc);
            }
            ci += ROWS;
        }
        while ci < CI {
            let mut acc = [0.0f32; B];
            acc.copy_from_slice(&gradient[ci][co..co + B]);
            for j in 0..count {
                let (xi, gv) = (x(j)[ci], &g(j)[co..co + B]);
                for (a, &gl) in acc.iter_mut().zip(gv) {
                    *a = A::mul_add(xi, gl, *a);
                }
            }
            gradient[ci][co..co + B].copy_from_slice(&acc);
            ci += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::PortableArithmetic;
    use crate::test_support::random_values;

    fn check<const CI: usize, const CO: usize>() {
        let count = 7;
        let mut xs = vec![[0.0f32; CI]; count];
        let mut gs = vec![[0.0f32; CO]; count];
        random_values(1, xs.as_flattened_mut());
        random_values(2, gs.as_flattened_mut());
        let mut gradient = [[0.5f32; CO]; CI];
        accumulate_outer_products::<PortableArithmetic, CI, CO>(
            count,
            |j| &xs[j],
            |j| &gs[j],
            &mut gradient,
        );
        for ci in 0..CI {
            for co in 0..CO {
                let mut expected = 0.5f32;
                for j in 0..count {
                    expected += xs[j][ci] * gs[j][co];
                }
                assert_eq!(gradient[ci][co], expected, "[{ci}][{co}]");
            }
        }
    }

    #[test]
    fn every_block_shape_sums_in_pixel_order() {
        // 16- and 8-channel blocks, rows of 4 and the rows left over, and
        // the unblocked path.
        check::<6, 32>();
        check::<5, 8>();
        check::<3, 5>();
        check::<1, 16>();
    }
}
