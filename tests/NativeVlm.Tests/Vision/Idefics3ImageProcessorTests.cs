using NativeVlm.Models;
using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>The processor's size arithmetic, its settings file, and its batches, beyond what the fixtures cover.</summary>
public class Idefics3ImageProcessorTests
{
    [Theory]
    // Longest edge to 64; the short side truncated, and + 1 when odd.
    [InlineData(61, 97, 64, 40, 64)]
    [InlineData(130, 45, 64, 64, 22)]
    [InlineData(29, 37, 64, 50, 64)]
    [InlineData(100, 100, 64, 64, 64)]
    [InlineData(100, 100, 63, 64, 63)]
    [InlineData(3, 1000, 64, 1, 64)]
    // SmolVLM's 2048 and a side below one pixel.
    [InlineData(1, 5000, 2048, 1, 2048)]
    [InlineData(480, 640, 2048, 1536, 2048)]
    public void The_first_resize_keeps_the_aspect_ratio(int height, int width, int longestEdge, int outHeight, int outWidth) =>
        Assert.Equal((outHeight, outWidth), Idefics3ImageProcessor.ResizeOutputSize(height, width, longestEdge));

    [Theory]
    [InlineData(40, 64, 32, 64, 64)]
    [InlineData(64, 22, 32, 64, 32)]
    [InlineData(1536, 2048, 512, 1536, 2048)]
    [InlineData(1, 2048, 512, 512, 2048)]
    [InlineData(1000, 10, 512, 1024, 512)]
    public void Frames_grow_to_multiples_of_the_tile(int height, int width, int tile, int outHeight, int outWidth) =>
        Assert.Equal((outHeight, outWidth), Idefics3ImageProcessor.VisionEncoderSize(height, width, tile));

    private static Idefics3ImageProcessorConfig Load(string json)
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.Path(Idefics3ImageProcessorConfig.FileName), json);
        return Idefics3ImageProcessorConfig.Load(dir.Root);
    }

    [Fact]
    public void An_empty_settings_file_takes_the_class_defaults()
    {
        Idefics3ImageProcessorConfig config = Load("{}");
        Assert.Equal(new Idefics3ImageProcessorConfig() with { ImageMean = config.ImageMean, ImageStd = config.ImageStd }, config);
        Assert.Equal(1456, config.LongestEdge);
        Assert.Equal(364, config.MaxImageSize);
        Assert.Equal(Resample.Lanczos, config.Resample);
        Assert.Equal([0.5, 0.5, 0.5], config.ImageMean);
    }

    [Fact]
    public void SmolVLMs_settings_load()
    {
        Idefics3ImageProcessorConfig config = Load("""
            {"do_convert_rgb": true, "do_image_splitting": true, "do_normalize": true, "do_pad": true, "do_rescale": true,
             "do_resize": true, "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Idefics3ImageProcessor",
             "image_std": [0.5, 0.5, 0.5], "max_image_size": {"longest_edge": 512}, "processor_class": "Idefics3Processor",
             "resample": 1, "rescale_factor": 0.00392156862745098, "size": {"longest_edge": 2048}}
            """);
        Assert.Equal((2048, 512, 1.0 / 255), (config.LongestEdge!.Value, config.MaxImageSize, config.RescaleFactor));
    }

    [Fact]
    public void SmolVLM2s_settings_load_as_the_same_processor()
    {
        // SmolVLMImageProcessor is Idefics3ImageProcessor under another name; video_sampling is read only for videos.
        Idefics3ImageProcessorConfig config = Load("""
            {"do_convert_rgb": true, "do_image_splitting": true, "do_normalize": true, "do_pad": true, "do_rescale": true,
             "do_resize": true, "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SmolVLMImageProcessor",
             "image_std": [0.5, 0.5, 0.5], "max_image_size": {"longest_edge": 512}, "processor_class": "SmolVLMProcessor",
             "resample": 1, "rescale_factor": 0.00392156862745098, "size": {"longest_edge": 2048},
             "video_sampling": {"fps": 1, "max_frames": 64, "video_size": {"longest_edge": 512}}}
            """);
        Assert.Equal((2048, 512, Resample.Lanczos), (config.LongestEdge!.Value, config.MaxImageSize, config.Resample));
    }

    [Theory]
    [InlineData("""{"do_pad": false}""", "do_pad")]
    [InlineData("""{"image_processor_type": "SmolVLMImageProcessorFast"}""", "image_processor_type")]
    [InlineData("""{"do_convert_rgb": false}""", "do_convert_rgb")]
    [InlineData("""{"image_processor_type": "Idefics3ImageProcessorFast"}""", "image_processor_type")]
    [InlineData("""{"crop_size": {"height": 3}}""", "crop_size")]
    [InlineData("""{"image_mean": [0.5, 0.5]}""", "image_mean")]
    [InlineData("""{"image_std": "0.5"}""", "image_std")]
    [InlineData("""{"resample": 9}""", "resample")]
    [InlineData("""{"size": {"shortest_edge": 9}}""", "size")]
    [InlineData("""{"size": {"longest_edge": 0}}""", "size.longest_edge")]
    [InlineData("""{"max_image_size": {"height": 9}}""", "max_image_size.longest_edge")]
    public void A_setting_that_would_change_the_math_is_refused_by_name(string json, string field)
    {
        var e = Assert.Throws<ConfigException>(() => Load(json));
        Assert.Equal(field, e.JsonPath);
        Assert.Contains(field, e.Message);
    }

    private static DecodedImage Flat(string origin, ImageMode mode, int width, int height, byte value) =>
        new(origin, mode, new Raster(width, height, mode.Channels(), Enumerable.Repeat(value, width * height * mode.Channels()).ToArray()),
            mode == ImageMode.P ? Enumerable.Range(0, 768).Select(i => (byte)(255 - i / 3)).ToArray() : null);

    [Fact]
    public void A_sample_with_two_images_lists_both_frames_and_their_rows_and_cols()
    {
        var processor = new Idefics3ImageProcessor(new Idefics3ImageProcessorConfig { LongestEdge = 64, MaxImageSize = 32 });
        ProcessedImages processed = processor.Process([[Flat("a", ImageMode.RGB, 90, 30, 10), Flat("b", ImageMode.L, 20, 20, 200)]]);
        // a: 64×22 → 64×32 → 1×2 tiles + global; b: 64×64 → 2×2 tiles + global.
        Assert.Equal([1, 3 + 5, 3, 32, 32], processed.PixelShape);
        Assert.Equal([1, 2], processed.Rows.Single());
        Assert.Equal([2, 2], processed.Cols.Single());
        Assert.All(processed.PixelAttentionMask, m => Assert.Equal(1, m));
    }

    /// <summary>Rescale then normalise in float32: 10 · (1/255) in double, then (x − 0.5) / 0.5; without either step the values stay as they were.</summary>
    [Fact]
    public void Rescale_and_normalise_can_each_be_off()
    {
        DecodedImage image = Flat("flat", ImageMode.P, 40, 40, 10);
        float Value(bool rescale, bool normalise) =>
            new Idefics3ImageProcessor(new Idefics3ImageProcessorConfig { LongestEdge = 32, MaxImageSize = 32, DoRescale = rescale, DoNormalize = normalise })
                .Process([[image]]).PixelValues[0];
        // Palette entry 10 is (245, 245, 245).
        Assert.Equal((float)(245 * (1.0 / 255)), Value(true, false));
        Assert.Equal(((float)(245 * (1.0 / 255)) - 0.5f) / 0.5f, Value(true, true));
        Assert.Equal(245f, Value(false, false));
        Assert.Equal((245f - 0.5f) / 0.5f, Value(false, true));
    }

    [Fact]
    public void A_frame_resized_to_nothing_is_an_error_naming_the_image()
    {
        var processor = new Idefics3ImageProcessor(new Idefics3ImageProcessorConfig { LongestEdge = null, Size = (5, 0) });
        var e = Assert.Throws<ImageInputException>(() => processor.Process([[Flat("thin.png", ImageMode.RGB, 9, 9, 1)]]));
        Assert.StartsWith("thin.png: 9x9 would be resized to 0x5", e.Message);
    }
}
