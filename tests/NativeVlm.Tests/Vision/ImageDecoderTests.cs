using System.Buffers.Binary;
using System.IO.Compression;
using NativeVlm.Vision;
using SkiaSharp;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// Hostile input: truncated, corrupt, oversized and unsupported images are an
/// <see cref="ImageInputException"/> whose message starts with where the bytes came from; nothing
/// crashes, hangs or allocates past the pixel limit.
/// </summary>
public class ImageDecoderTests
{
    /// <summary>Every encoded image of the image fixtures: PNG (ours), baseline, progressive and CMYK JPEG, and WebP.</summary>
    public static TheoryData<string> EncodedFiles() => new(
        new[] { "image-processing", "image-decoding" }
            .SelectMany(folder => Directory.GetFiles(Fixtures.Path(folder)))
            .Where(f => f.EndsWith(".png", StringComparison.Ordinal) || f.EndsWith(".jpg", StringComparison.Ordinal) || f.EndsWith(".webp", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal));

    /// <summary>A small image that libjpeg or libwebp (through Skia) encoded.</summary>
    private static byte[] SkiaEncoded(SKEncodedImageFormat format, int width = 24, int height = 16)
    {
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        byte[] pixels = Enumerable.Range(0, info.BytesSize).Select(i => i % 4 == 3 ? (byte)255 : (byte)(i * 5)).ToArray();
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        using SKData data = bitmap.Encode(format, 90);
        return data.ToArray();
    }

    private static ImageInputException Fails(byte[] data, string origin = "dataset.parquet row 7", long maxPixels = ImageDecoder.DefaultMaxPixels)
    {
        var e = Assert.Throws<ImageInputException>(() => ImageDecoder.Decode(data, origin, maxPixels));
        Assert.Equal(origin, e.Origin);
        Assert.StartsWith(origin + ": ", e.Message);
        return e;
    }

    [Theory]
    [InlineData(new byte[0], "not a PNG, JPEG or WebP")]
    [InlineData(new byte[] { (byte)'G', (byte)'I', (byte)'F', (byte)'8', (byte)'9', (byte)'a', 1, 0, 1, 0 }, "not a PNG, JPEG or WebP")]
    [InlineData(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, "no image data")]
    [InlineData(new byte[] { 0xFF, 0xD8, 0xFF }, "JPEG has no frame header")]
    public void Bytes_that_are_no_image_name_their_origin(byte[] data, string detail) =>
        Assert.Contains(detail, Fails(data).Message);

    [Fact]
    public void A_missing_file_names_the_path()
    {
        string path = Path.Combine(Path.GetTempPath(), "nvlm-no-such-image.png");
        Assert.StartsWith(path + ": cannot read", Assert.Throws<ImageInputException>(() => ImageDecoder.DecodeFile(path)).Message);
    }

    [Theory]
    [Trait("Category", Fixtures.Category)]
    [MemberData(nameof(EncodedFiles))]
    public void Every_truncation_is_an_error(string file)
    {
        byte[] data = File.ReadAllBytes(file);
        foreach (int length in new[] { 8, 20, 100, data.Length / 3, data.Length / 2, data.Length * 9 / 10 })
        {
            Fails(data[..length]);
        }
    }

    /// <summary>Random byte changes (CRCs fixed up for PNG, so that the damage reaches the pixel data): decoded or refused, nothing else.</summary>
    [Theory]
    [Trait("Category", Fixtures.Category)]
    [MemberData(nameof(EncodedFiles))]
    public void Corrupt_bytes_decode_or_are_refused(string file)
    {
        byte[] original = File.ReadAllBytes(file);
        var random = new Random(Path.GetFileName(file).Length);
        for (int trial = 0; trial < 300; trial++)
        {
            byte[] data = (byte[])original.Clone();
            for (int n = random.Next(1, 6); n > 0; n--)
            {
                data[random.Next(data.Length)] = (byte)random.Next(256);
            }
            if (file.EndsWith(".png", StringComparison.Ordinal))
            {
                FixPngCrcs(data);
            }
            try
            {
                DecodedImage image = ImageDecoder.Decode(data, "fuzz");
                Assert.Equal(image.Width * image.Height * image.Mode.Channels(), image.Pixels.Pixels.Length);
            }
            catch (ImageInputException e)
            {
                Assert.StartsWith("fuzz: ", e.Message);
            }
        }
    }

    [Fact]
    public void A_png_header_over_the_pixel_limit_is_refused_before_decoding()
    {
        byte[] png = TestPng.Encode(4, 4, 8, TestPng.Grey, new int[16]);
        BinaryPrimitives.WriteInt32BigEndian(png.AsSpan(16), 100_000);
        BinaryPrimitives.WriteInt32BigEndian(png.AsSpan(20), 100_000);
        FixPngCrcs(png);
        Assert.Contains("100000x100000 (10000000000 pixels) exceeds the limit of 178956970 pixels", Fails(png).Message);
    }

    [Fact]
    public void A_jpeg_header_over_the_pixel_limit_is_refused_before_decoding()
    {
        byte[] jpeg = SkiaEncoded(SKEncodedImageFormat.Jpeg);
        int sof = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xC0]);
        BinaryPrimitives.WriteUInt16BigEndian(jpeg.AsSpan(sof + 5), 60_000);
        BinaryPrimitives.WriteUInt16BigEndian(jpeg.AsSpan(sof + 7), 60_000);
        Assert.Contains("60000x60000", Fails(jpeg).Message);
    }

    [Fact]
    public void The_pixel_limit_is_configurable()
    {
        byte[] webp = SkiaEncoded(SKEncodedImageFormat.Webp, 101, 67);
        Assert.Contains("exceeds the limit of 1000 pixels", Fails(webp, maxPixels: 1000).Message);
        Assert.Equal(101, ImageDecoder.Decode(webp, "small.webp", maxPixels: 101 * 67).Width);
    }

    /// <summary>A 1×1 PNG whose image data inflates to 64 MiB: only the row it needs is inflated.</summary>
    [Fact]
    public void A_zlib_bomb_inflates_no_more_than_the_image_needs()
    {
        var idat = new MemoryStream();
        using (var zlib = new ZLibStream(idat, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            var zeros = new byte[1 << 20];
            for (int i = 0; i < 64; i++)
            {
                zlib.Write(zeros);
            }
        }
        var png = new MemoryStream();
        png.Write(PngDecoder.Signature);
        TestPng.WriteChunk(png, "IHDR", [0, 0, 0, 1, 0, 0, 0, 1, 8, TestPng.Grey, 0, 0, 0]);
        TestPng.WriteChunk(png, "IDAT", idat.ToArray());
        TestPng.WriteChunk(png, "IEND", []);

        long before = GC.GetAllocatedBytesForCurrentThread();
        DecodedImage image = ImageDecoder.Decode(png.ToArray(), "bomb.png");
        Assert.Equal([0], image.Pixels.Pixels);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 4 << 20, "the decoder inflated more than it needed");
    }

    [Fact]
    public void A_png_with_a_bad_checksum_is_broken()
    {
        byte[] png = TestPng.Encode(5, 5, 8, TestPng.Rgb, Enumerable.Range(0, 75).ToArray());
        png[^20] ^= 1;
        Assert.Contains("broken PNG file (bad checksum in chunk IDAT", Fails(png).Message);
    }

    [Fact]
    public void The_processor_refuses_mode_LA_naming_the_image()
    {
        byte[] png = TestPng.Encode(3, 3, 8, TestPng.GreyAlpha, Enumerable.Range(0, 18).ToArray());
        DecodedImage image = ImageDecoder.Decode(png, "la.png");
        Assert.Equal(ImageMode.LA, image.Mode);
        var processor = new Idefics3ImageProcessor(new Idefics3ImageProcessorConfig());
        var e = Assert.Throws<ImageInputException>(() => processor.Process([[image]]));
        Assert.StartsWith("la.png: mode LA", e.Message);
    }

    [Fact]
    public void Webp_with_alpha_decodes_to_RGBA_with_straight_alpha()
    {
        var info = new SKImageInfo(5, 4, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        byte[] pixels = Enumerable.Range(0, info.BytesSize).Select(i => i % 4 == 3 ? (byte)(i * 3) : (byte)(i * 7)).ToArray();
        using var bitmap = new SKBitmap(info);
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        using SKPixmap pixmap = bitmap.PeekPixels();
        using SKData webp = pixmap.Encode(new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossless, 100))!;

        DecodedImage image = ImageDecoder.Decode(webp.ToArray(), "alpha.webp");

        Assert.Equal(ImageMode.RGBA, image.Mode);
        VisionAssert.BytesEqual(pixels, image.Pixels.Pixels, "lossless WebP with alpha");
    }

    /// <summary>Recomputes every chunk's CRC, stopping where the chunk structure itself is broken.</summary>
    private static void FixPngCrcs(byte[] png)
    {
        int offset = 8;
        while (offset + 12 <= png.Length)
        {
            uint length = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(offset));
            if (length > png.Length - offset - 12)
            {
                return;
            }
            uint crc = PngDecoder.Crc32(png.AsSpan(offset + 4, 4 + (int)length));
            BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(offset + 8 + (int)length), crc);
            offset += 12 + (int)length;
        }
    }
}
