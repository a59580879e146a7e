using NativeVlm.Demo;
using NativeVlm.Vision;
using SkiaSharp;
using Xunit;

namespace NativeVlm.Tests.Demo;

/// <summary>The demo's PNG encoder, read back by the repository's decoder and by Skia (libpng's reading of it).</summary>
public class PngEncoderTests
{
    /// <summary>A non-square raster where every pixel differs from its neighbours, so a swapped row, column or channel shows.</summary>
    private static Raster Gradient(int width, int height) =>
        new(width, height, 3, [.. Enumerable.Range(0, width * height * 3).Select(i => (byte)(i * 7 + i / (width * 3) * 13))]);

    [Fact]
    public void The_repository_decoder_reads_back_the_same_rgb_pixels()
    {
        Raster raster = Gradient(37, 11);

        DecodedImage decoded = PngDecoder.Decode(PngEncoder.EncodeRgb(raster), "gradient.png", maxPixels: 1_000_000);

        Assert.Equal(ImageMode.RGB, decoded.Mode);
        Assert.Equal((37, 11), (decoded.Width, decoded.Height));
        Assert.Equal(raster.Pixels, decoded.Pixels.Pixels);
    }

    [Fact]
    public void Skia_reads_back_the_same_pixels()
    {
        Raster raster = Gradient(20, 9);

        using SKBitmap bitmap = SKBitmap.Decode(PngEncoder.EncodeRgb(raster));

        Assert.NotNull(bitmap);
        Assert.Equal((20, 9), (bitmap.Width, bitmap.Height));
        for (int y = 0; y < 9; y++)
        {
            for (int x = 0; x < 20; x++)
            {
                int i = (y * 20 + x) * 3;
                SKColor pixel = bitmap.GetPixel(x, y);
                Assert.Equal((raster.Pixels[i], raster.Pixels[i + 1], raster.Pixels[i + 2], (byte)255), (pixel.Red, pixel.Green, pixel.Blue, pixel.Alpha));
            }
        }
    }

    [Fact]
    public void A_raster_that_is_not_rgb_is_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => PngEncoder.EncodeRgb(Raster.Zeros(4, 4, 4)));

        Assert.Contains("3 channels", e.Message);
    }
}
