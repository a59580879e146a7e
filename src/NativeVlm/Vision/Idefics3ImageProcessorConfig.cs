using System.Text.Json;
using NativeVlm.Models;

namespace NativeVlm.Vision;

/// <summary>
/// The settings of transformers' Idefics3ImageProcessor, from a snapshot's preprocessor_config.json;
/// an absent field takes the class's default. SmolVLM2 snapshots name SmolVLMImageProcessor, which
/// transformers defines as Idefics3ImageProcessor unchanged (modular_smolvlm.py: a subclass with no
/// body), so it reads the same. A field whose value this implementation does not reproduce, or a
/// field it does not know (it might change the math), is a <see cref="ConfigException"/> naming the
/// file and the field.
/// </summary>
public sealed record Idefics3ImageProcessorConfig
{
    public const string FileName = "preprocessor_config.json";

    public const string ProcessorType = "Idefics3ImageProcessor";

    /// <summary>SmolVLM2's image processor: the same class as <see cref="ProcessorType"/> under another name.</summary>
    public const string SmolVlmProcessorType = "SmolVLMImageProcessor";

    /// <summary>
    /// Fields that describe the file rather than the image math; the processor class ignores them too.
    /// video_sampling (SmolVLM2) sets how videos are sampled into frames, never read for images.
    /// </summary>
    private static readonly HashSet<string> InertFields = ["image_processor_type", "processor_class", "video_sampling"];

    /// <summary>Resize so that the longest edge is this many pixels (size.longest_edge); null when <see cref="Size"/> is fixed.</summary>
    public int? LongestEdge { get; init; } = 4 * 364;

    /// <summary>size.height and size.width, when the config fixes the size instead of the longest edge.</summary>
    public (int Height, int Width)? Size { get; init; }

    public bool DoResize { get; init; } = true;

    public Resample Resample { get; init; } = Resample.Lanczos;

    public bool DoImageSplitting { get; init; } = true;

    /// <summary>max_image_size.longest_edge: the side of every tile and of the global image.</summary>
    public int MaxImageSize { get; init; } = 364;

    public bool DoRescale { get; init; } = true;

    public double RescaleFactor { get; init; } = 1.0 / 255;

    public bool DoNormalize { get; init; } = true;

    /// <summary>Per RGB channel; IMAGENET_STANDARD_MEAN by default.</summary>
    public IReadOnlyList<double> ImageMean { get; init; } = [0.5, 0.5, 0.5];

    /// <summary>Per RGB channel; IMAGENET_STANDARD_STD by default.</summary>
    public IReadOnlyList<double> ImageStd { get; init; } = [0.5, 0.5, 0.5];

    /// <summary>A snapshot directory (its preprocessor_config.json) or the file itself.</summary>
    public static Idefics3ImageProcessorConfig Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"{file} not found: a snapshot's image settings are in its {FileName}", file);
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(file));
        }
        catch (JsonException e)
        {
            throw new ConfigException(file, "", $"{file}: not valid JSON ({e.Message})");
        }
        using (document)
        {
            return Parse(ConfigJson.Root(file, document.RootElement), document.RootElement);
        }
    }

    private static Idefics3ImageProcessorConfig Parse(ConfigJson json, JsonElement root)
    {
        string type = json.String("image_processor_type", ProcessorType);
        if (type is not (ProcessorType or SmolVlmProcessorType))
        {
            throw json.Unsupported("image_processor_type", ConfigJson.Format(type),
                $"'{ProcessorType}' or '{SmolVlmProcessorType}' (the fast processors resize with torch, not PIL, and give other pixels)");
        }
        if (!json.Bool("do_convert_rgb", true))
        {
            throw json.Unsupported("do_convert_rgb", "false", "true: frames are converted to RGB");
        }
        if (!json.Bool("do_pad", true))
        {
            throw json.Unsupported("do_pad", "false", "true: the model takes frames padded into one tensor");
        }
        var known = new HashSet<string>(InertFields)
        {
            "do_convert_rgb", "do_pad", "do_resize", "size", "resample", "do_image_splitting", "max_image_size",
            "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
        };
        foreach (JsonProperty field in root.EnumerateObject().Where(f => !known.Contains(f.Name)))
        {
            throw json.Invalid(field.Name, field.Value, "is not a field of Idefics3ImageProcessor, and might change the image math");
        }

        (int? longestEdge, (int, int)? size) = ParseSize(json);
        return new Idefics3ImageProcessorConfig
        {
            DoResize = json.Bool("do_resize", true),
            LongestEdge = longestEdge,
            Size = size,
            Resample = ParseResample(json),
            DoImageSplitting = json.Bool("do_image_splitting", true),
            MaxImageSize = json.Section("max_image_size").Exists
                ? Require(json.Section("max_image_size"), "longest_edge").PositiveInt("longest_edge", 0)
                : 364,
            DoRescale = json.Bool("do_rescale", true),
            RescaleFactor = json.Double("rescale_factor", 1.0 / 255),
            DoNormalize = json.Bool("do_normalize", true),
            ImageMean = PerChannel(json, "image_mean"),
            ImageStd = PerChannel(json, "image_std"),
        };
    }

    /// <summary>size is {"longest_edge": n} or {"height": h, "width": w}, as Idefics3ImageProcessor.resize takes it.</summary>
    private static (int? LongestEdge, (int, int)? Size) ParseSize(ConfigJson json)
    {
        ConfigJson size = json.Section("size");
        if (!size.Exists)
        {
            return (4 * 364, null);
        }
        if (!size.IsAbsent("longest_edge"))
        {
            return (Require(size, "longest_edge").PositiveInt("longest_edge", 0), null);
        }
        if (!size.IsAbsent("height") && !size.IsAbsent("width"))
        {
            ConfigJson fixedSize = Require(size, "height", "width");
            return (null, (fixedSize.PositiveInt("height", 0), fixedSize.PositiveInt("width", 0)));
        }
        throw json.Unsupported("size", json.Value("size")!.Value, "{\"longest_edge\": n} or {\"height\": h, \"width\": w}");
    }

    private static ConfigJson Require(ConfigJson section, params string[] keys)
    {
        foreach (string key in keys)
        {
            if (section.IsAbsent(key))
            {
                throw new ConfigException(section.FilePath, section.FieldPath(key), $"{section.FilePath}: {section.FieldPath(key)} is missing");
            }
        }
        return section;
    }

    private static Resample ParseResample(ConfigJson json)
    {
        int value = json.Int("resample", (int)Resample.Lanczos);
        return Enum.IsDefined((Resample)value)
            ? (Resample)value
            : throw json.Unsupported("resample", ConfigJson.Format(value), "a PIL.Image.Resampling value, 0 to 5");
    }

    /// <summary>One number for every channel, or one per RGB channel (normalize checks the count against the image's 3).</summary>
    private static IReadOnlyList<double> PerChannel(ConfigJson json, string key)
    {
        if (json.IsAbsent(key))
        {
            return [0.5, 0.5, 0.5];
        }
        JsonElement value = json.Value(key) ?? throw json.Invalid(key, "null", "must be a number or a list of 3 numbers");
        if (value.ValueKind == JsonValueKind.Number)
        {
            double one = json.Double(key, 0);
            return [one, one, one];
        }
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() != 3
            || value.EnumerateArray().Any(v => v.ValueKind != JsonValueKind.Number))
        {
            throw json.Invalid(key, value, "must be a number or a list of 3 numbers (one per RGB channel)");
        }
        return value.EnumerateArray().Select(v => v.GetDouble()).ToArray();
    }
}
