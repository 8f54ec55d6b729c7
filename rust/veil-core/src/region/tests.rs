use super::*;
use crate::image::Image;
use proptest::prelude::*;

fn grey_ramp(w: usize, h: usize, c: usize) -> Image {
    let mut img = Image::new(w, h, c).unwrap();
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = ((i * 31 + i / 7) % 256) as u8;
    }
    img
}

fn changed(a: &Image, b: &Image, x: usize, y: usize) -> bool {
    let c = a.channels;
    let i = (y * a.width + x) * c;
    a.data[i..i + colour_channels(c)] != b.data[i..i + colour_channels(c)]
}

#[test]
fn fill_covers_region_exactly_without_feather() {
    let orig = grey_ramp(20, 10, 3);
    let mut img = orig.clone();
    let r = Region::new(4.0, 2.0, 6.0, 5.0, Shape::Rectangle, 0.0);
    apply_to_regions(img.view_mut(), &Method::Fill { color: [1, 2, 3] }, &[r], 1).unwrap();
    for y in 0..10 {
        for x in 0..20 {
            let inside = (4..10).contains(&x) && (2..7).contains(&y);
            let i = (y * 20 + x) * 3;
            if inside {
                assert_eq!(&img.data[i..i + 3], &[1, 2, 3]);
            } else {
                assert_eq!(&img.data[i..i + 3], &orig.data[i..i + 3], "({x},{y}) outside changed");
            }
        }
    }
}

#[test]
fn ellipse_leaves_corners_and_covers_centre() {
    let orig = grey_ramp(40, 40, 3);
    let mut img = orig.clone();
    let r = Region::new(0.0, 0.0, 40.0, 40.0, Shape::Ellipse, 0.0);
    apply_to_regions(img.view_mut(), &Method::Fill { color: [0, 0, 0] }, &[r], 1).unwrap();
    assert!(!changed(&orig, &img, 0, 0) && !changed(&orig, &img, 39, 39));
    assert!(changed(&orig, &img, 20, 20) && changed(&orig, &img, 20, 1));
}

#[test]
fn feather_fades_outside_the_region() {
    let mut img = Image::from_vec(vec![200; 60 * 1], 60, 1, 1).unwrap();
    let r = Region::new(20.0, -5.0, 10.0, 20.0, Shape::Rectangle, 10.0);
    apply_to_regions(img.view_mut(), &Method::Fill { color: [0, 0, 0] }, &[r], 1).unwrap();
    let row = &img.data;
    assert!(row[20..30].iter().all(|&v| v == 0), "region fully covered");
    assert!(row[..10].iter().all(|&v| v == 200) && row[40..].iter().all(|&v| v == 200));
    // Monotone fade across the feather on the right.
    for x in 30..40 {
        assert!(row[x] <= row[x + 1], "{:?}", &row[28..42]);
    }
    assert!(row[31] < 100 && row[38] > 100);
}

#[test]
fn regions_outside_the_image_change_nothing() {
    let orig = grey_ramp(10, 10, 4);
    let mut img = orig.clone();
    let regions = [
        Region::new(-50.0, -50.0, 20.0, 20.0, Shape::Ellipse, 3.0),
        Region::new(100.0, 0.0, 5.0, 5.0, Shape::Rectangle, 0.0),
        Region::new(3.0, 3.0, 0.0, 4.0, Shape::Rectangle, 0.0),
    ];
    for m in [Method::GaussianBlur { sigma_px: 5.0 }, Method::Pixelate { block_px: 4 }, Method::Fill { color: [0; 3] }] {
        apply_to_regions(img.view_mut(), &m, &regions, 1).unwrap();
    }
    assert_eq!(img, orig);
}

#[test]
fn pixelate_grid_is_anchored_to_the_region() {
    let orig = grey_ramp(30, 30, 1);
    let mut img = orig.clone();
    let r = Region::new(5.0, 7.0, 8.0, 8.0, Shape::Rectangle, 0.0);
    apply_to_regions(img.view_mut(), &Method::Pixelate { block_px: 4 }, &[r], 1).unwrap();
    // Each 4x4 block starting at (5,7) is uniform and equals its mean.
    for (bx, by) in [(5, 7), (9, 7), (5, 11), (9, 11)] {
        let mut sum = 0u32;
        for y in by..by + 4 {
            for x in bx..bx + 4 {
                sum += orig.data[y * 30 + x] as u32;
            }
        }
        let mean = ((2 * sum + 16) / 32) as u8;
        for y in by..by + 4 {
            for x in bx..bx + 4 {
                assert_eq!(img.data[y * 30 + x], mean);
            }
        }
    }
}

#[test]
fn invalid_parameters_leave_the_image_untouched() {
    let orig = grey_ramp(10, 10, 3);
    let mut img = orig.clone();
    let good = Region::new(1.0, 1.0, 5.0, 5.0, Shape::Rectangle, 0.0);
    let bad = Region::new(f64::NAN, 1.0, 5.0, 5.0, Shape::Rectangle, 0.0);
    assert!(apply_to_regions(img.view_mut(), &Method::Fill { color: [0; 3] }, &[good, bad], 1).is_err());
    let neg = Region::new(1.0, 1.0, -5.0, 5.0, Shape::Rectangle, 0.0);
    assert!(apply_to_regions(img.view_mut(), &Method::Fill { color: [0; 3] }, &[neg], 1).is_err());
    let feather = Region::new(1.0, 1.0, 5.0, 5.0, Shape::Rectangle, -1.0);
    assert!(apply_to_regions(img.view_mut(), &Method::Fill { color: [0; 3] }, &[feather], 1).is_err());
    assert!(apply_to_regions(img.view_mut(), &Method::GaussianBlur { sigma_px: 0.0 }, &[good], 1).is_err());
    assert!(apply_to_regions(img.view_mut(), &Method::Pixelate { block_px: 0 }, &[good], 1).is_err());
    assert_eq!(img, orig);
}

#[test]
fn blur_in_region_uses_neighbouring_pixels() {
    // A region on the left half of a black/white split: blurring it must pull
    // in white from beyond its right edge, as a blur of the whole photo would.
    let mut img = Image::new(40, 20, 1).unwrap();
    for y in 0..20 {
        for x in 20..40 {
            img.data[y * 40 + x] = 255;
        }
    }
    let mut whole = vec![0u8; img.data.len()];
    crate::blur::gaussian_blur(img.view(), &mut whole, 3.0, 1).unwrap();
    let r = Region::new(10.0, 5.0, 10.0, 10.0, Shape::Rectangle, 0.0);
    apply_to_regions(img.view_mut(), &Method::GaussianBlur { sigma_px: 3.0 }, &[r], 1).unwrap();
    for y in 5..15 {
        for x in 10..20 {
            assert_eq!(img.data[y * 40 + x], whole[y * 40 + x]);
        }
    }
}

fn any_method() -> impl Strategy<Value = Method> {
    prop_oneof![
        (0.5f64..60.0).prop_map(|s| Method::GaussianBlur { sigma_px: s }),
        (0usize..300).prop_map(|r| Method::BoxBlur { radius_px: r }),
        (1usize..300).prop_map(|b| Method::Pixelate { block_px: b }),
        any::<[u8; 3]>().prop_map(|c| Method::Fill { color: c }),
        (any::<u8>(), any::<u64>()).prop_map(|(a, s)| Method::Noise { amount: a, seed: s }),
    ]
}

fn any_region() -> impl Strategy<Value = Region> {
    (-300f64..500.0, -300f64..500.0, 0f64..600.0, 0f64..600.0, any::<bool>(), 0f64..40.0)
        .prop_map(|(l, t, w, h, e, f)| Region::new(l, t, w, h, if e { Shape::Ellipse } else { Shape::Rectangle }, f))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any method on any regions, partly or wholly outside: no panic, nothing
    /// changes outside the regions' feathered bounds, alpha never changes, and
    /// threads give the same answer.
    #[test]
    fn regions_never_panic_and_respect_bounds(
        w in 1usize..120, h in 1usize..120, c in prop::sample::select(vec![1usize, 3, 4]),
        method in any_method(), regions in prop::collection::vec(any_region(), 0..4)
    ) {
        let orig = grey_ramp(w, h, c);
        let mut one = orig.clone();
        apply_to_regions(one.view_mut(), &method, &regions, 1).unwrap();
        let mut two = orig.clone();
        apply_to_regions(two.view_mut(), &method, &regions, 2).unwrap();
        prop_assert_eq!(&one, &two);
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let touched = regions.iter().any(|r| r.weight_at(px, py) > 0.0);
                if !touched {
                    prop_assert!(!changed(&orig, &one, x, y), "pixel ({}, {}) outside every region changed", x, y);
                }
                if c == 4 {
                    let i = (y * w + x) * 4 + 3;
                    prop_assert_eq!(one.data[i], orig.data[i]);
                }
            }
        }
    }
}
