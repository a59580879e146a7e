using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// Pillow's resize beyond the fixtures' LANCZOS and NEAREST cases: results that follow from the
/// fixed-point arithmetic in closed form, and what Pillow does per mode.
/// </summary>
public class PillowResizeTests
{
    private static Raster RandomRaster(int width, int height, int channels, int seed)
    {
        var pixels = new byte[width * height * channels];
        new Random(seed).NextBytes(pixels);
        return new Raster(width, height, channels, pixels);
    }

    public static TheoryData<Resample, ImageMode> FiltersAndModes()
    {
        var cases = new TheoryData<Resample, ImageMode>();
        foreach (Resample filter in Enum.GetValues<Resample>())
        {
            foreach (ImageMode mode in new[] { ImageMode.L, ImageMode.RGB, ImageMode.RGBA, ImageMode.CMYK })
            {
                cases.Add(filter, mode);
            }
        }
        return cases;
    }

    /// <summary>Weights are normalised to sum 1 before rounding, so a flat image stays flat at any scale.</summary>
    [Theory]
    [MemberData(nameof(FiltersAndModes))]
    public void A_flat_image_stays_flat(Resample filter, ImageMode mode)
    {
        int channels = mode.Channels();
        byte[] colour = new byte[] { 200, 17, 90, 255 }[..channels];
        var flat = new Raster(23, 17, channels, Enumerable.Range(0, 23 * 17).SelectMany(_ => colour).ToArray());
        foreach ((int width, int height) in new[] { (7, 5), (23, 40), (64, 3), (1, 1) })
        {
            Raster resized = PillowResize.Resize(flat, mode, width, height, filter);
            Assert.Equal(Enumerable.Range(0, width * height).SelectMany(_ => colour), resized.Pixels);
        }
    }

    /// <summary>
    /// BOX halving: each pass adds two halves and a rounding half, in 22-bit fixed point, so the
    /// result is ⌊(⌊(a + b + 1) / 2⌋ + ⌊(c + d + 1) / 2⌋ + 1) / 2⌋ with a, b the top pair, c, d the bottom.
    /// </summary>
    [Fact]
    public void Box_halving_rounds_each_pass_half_up()
    {
        Raster image = RandomRaster(8, 6, 1, 1);
        Raster half = PillowResize.Resize(image, ImageMode.L, 4, 3, Resample.Box);
        for (int y = 0; y < 3; y++)
        {
            for (int x = 0; x < 4; x++)
            {
                int At(int dx, int dy) => image.Pixels[(2 * y + dy) * 8 + 2 * x + dx];
                int top = (At(0, 0) + At(1, 0) + 1) / 2, bottom = (At(0, 1) + At(1, 1) + 1) / 2;
                Assert.Equal((top + bottom + 1) / 2, half.Pixels[y * 4 + x]);
            }
        }
    }

    /// <summary>NEAREST samples at (i + ½) · in / out, truncated: 3 → 5 reads 0, 0, 1, 2, 2; 5 → 2 reads 1, 3.</summary>
    [Fact]
    public void Nearest_samples_at_pixel_centres()
    {
        var row = new Raster(3, 1, 1, [10, 20, 30]);
        Assert.Equal([10, 10, 20, 30, 30], PillowResize.Resize(row, ImageMode.L, 5, 1, Resample.Nearest).Pixels);
        var five = new Raster(5, 1, 1, [1, 2, 3, 4, 5]);
        Assert.Equal([2, 4], PillowResize.Resize(five, ImageMode.L, 2, 1, Resample.Nearest).Pixels);
    }

    /// <summary>Palette indices and bilevel pixels are never blended: Pillow resizes modes P and 1 with NEAREST whatever is asked.</summary>
    [Theory]
    [InlineData(ImageMode.P)]
    [InlineData(ImageMode.Bilevel)]
    public void Palette_and_bilevel_images_are_resized_with_nearest(ImageMode mode)
    {
        Raster image = RandomRaster(19, 13, 1, 2);
        Raster nearest = PillowResize.Resize(image, ImageMode.L, 8, 29, Resample.Nearest);
        foreach (Resample filter in Enum.GetValues<Resample>())
        {
            Assert.Equal(nearest.Pixels, PillowResize.Resize(image, mode, 8, 29, filter).Pixels);
        }
    }

    /// <summary>Pillow returns a copy for an unchanged size, so RGBA colours under low alpha are not premultiplied and rounded.</summary>
    [Fact]
    public void An_unchanged_size_is_an_exact_copy()
    {
        Raster image = RandomRaster(9, 7, 4, 3);
        Raster same = PillowResize.Resize(image, ImageMode.RGBA, 9, 7, Resample.Lanczos);
        Assert.Equal(image.Pixels, same.Pixels);
        Assert.NotSame(image.Pixels, same.Pixels);
    }

    /// <summary>RGBA is resized premultiplied: the colour of fully transparent pixels does not bleed into their neighbours.</summary>
    [Theory]
    [InlineData(Resample.Lanczos)]
    [InlineData(Resample.Bicubic)]
    [InlineData(Resample.Bilinear)]
    public void Transparent_colour_does_not_bleed(Resample filter)
    {
        // Left half opaque red, right half transparent green.
        var image = new Raster(16, 4, 4, Enumerable.Range(0, 64).SelectMany(i => i % 16 < 8 ? new byte[] { 255, 0, 0, 255 } : [0, 255, 0, 0]).ToArray());
        Raster resized = PillowResize.Resize(image, ImageMode.RGBA, 5, 3, filter);
        for (int p = 0; p < 15; p++)
        {
            Assert.Equal(0, resized.Pixels[p * 4 + 1]);
        }
        // CMYK has no alpha and is resized channel by channel: there, green bleeds.
        Raster plain = PillowResize.Resize(image, ImageMode.CMYK, 5, 3, filter);
        Assert.Contains(Enumerable.Range(0, 15), p => plain.Pixels[p * 4 + 1] > 0);
    }

    [Fact]
    public void Premultiplication_rounds_and_unpremultiplication_truncates_as_Pillow()
    {
        Assert.Equal(50, PillowResize.MulDiv255(100, 128)); // 100 · 128 / 255 = 50.2
        Assert.Equal(64, PillowResize.MulDiv255(255, 64));
        var premultiplied = new Raster(1, 1, 4, [50, 200, 0, 128]);
        // 255 · 50 / 128 = 99.6 → 99; 255 · 200 / 128 = 398 → clamped to 255.
        Assert.Equal([99, 255, 0, 128], PillowResize.Unpremultiply(premultiplied).Pixels);
    }
}
