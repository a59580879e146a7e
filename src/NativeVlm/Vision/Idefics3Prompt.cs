using System.Text;
using System.Text.Json;
using NativeVlm.Models;

namespace NativeVlm.Vision;

/// <summary>
/// Idefics3Processor's (and SmolVLMProcessor's) expansion of each image token in a prompt: per tile,
/// row by row, <c>&lt;fake_token_around_image&gt;&lt;row_r_col_c&gt;</c> and image_seq_len
/// <c>&lt;image&gt;</c> tokens, a newline after each row, then a blank line and the global image
/// (<c>&lt;fake_token_around_image&gt;&lt;global-img&gt;</c>, the image tokens, <c>&lt;fake_token_around_image&gt;</c>);
/// an image that was not split (0 rows, 0 columns) is the global image alone. The three token strings
/// are the snapshot's (<see cref="ImageTokens"/>); the row/column markers are plain text.
/// </summary>
public sealed class Idefics3Prompt
{
    public const string FileName = "processor_config.json";

    /// <summary>Idefics3's image token, the default of <see cref="ImageTokens.Image"/>.</summary>
    public const string ImageToken = "<image>";

    /// <summary>Idefics3's token around each image and tile, the default of <see cref="ImageTokens.FakeAroundImage"/>.</summary>
    public const string FakeImageToken = "<fake_token_around_image>";

    /// <summary>Idefics3's global-image marker, the default of <see cref="ImageTokens.Global"/>.</summary>
    public const string GlobalImageToken = "<global-img>";

    /// <summary>Idefics3Processor's default when processor_config.json does not set image_seq_len.</summary>
    public const int DefaultImageSeqLen = 169;

    public Idefics3Prompt(int imageSeqLen, ImageTokens? tokens = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageSeqLen);
        ImageSeqLen = imageSeqLen;
        Tokens = tokens ?? ImageTokens.Idefics3;
    }

    /// <summary>Image tokens per frame: (image_size / patch_size)² / scale_factor².</summary>
    public int ImageSeqLen { get; }

    /// <summary>The image, around-image and global-image token strings the expansion writes.</summary>
    public ImageTokens Tokens { get; }

    /// <summary>
    /// A snapshot directory or its processor_config.json: image_seq_len from the file, the default
    /// when the snapshot has no such file or the file does not set it.
    /// </summary>
    public static Idefics3Prompt Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        if (!File.Exists(file))
        {
            return new Idefics3Prompt(DefaultImageSeqLen);
        }
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(file));
            ConfigJson json = ConfigJson.Root(file, document.RootElement);
            return new Idefics3Prompt(json.PositiveInt("image_seq_len", DefaultImageSeqLen));
        }
        catch (JsonException e)
        {
            throw new ConfigException(file, "", $"{file}: not valid JSON ({e.Message})");
        }
    }

    /// <summary>The text that replaces one image token of an image split into rows × cols tiles.</summary>
    public string ImageString(int rows, int cols)
    {
        string imageTokens = string.Concat(Enumerable.Repeat(Tokens.Image, ImageSeqLen));
        var text = new StringBuilder();
        if (rows != 0 || cols != 0)
        {
            for (int r = 1; r <= rows; r++)
            {
                for (int c = 1; c <= cols; c++)
                {
                    text.Append(Tokens.FakeAroundImage).Append($"<row_{r}_col_{c}>").Append(imageTokens);
                }
                text.Append('\n');
            }
            text.Append('\n');
        }
        return text.Append(Tokens.FakeAroundImage).Append(Tokens.Global).Append(imageTokens).Append(Tokens.FakeAroundImage).ToString();
    }

    /// <summary>
    /// Replaces the i-th image token of <paramref name="text"/> with image i's string; as
    /// Idefics3Processor, the counts of placeholders and images must agree.
    /// </summary>
    public string Expand(string text, IReadOnlyList<int> rows, IReadOnlyList<int> cols)
    {
        if (rows.Count != cols.Count)
        {
            throw new ArgumentException($"{rows.Count} row counts but {cols.Count} column counts", nameof(cols));
        }
        string[] pieces = text.Split(Tokens.Image);
        if (pieces.Length - 1 != rows.Count)
        {
            throw new ArgumentException(
                $"the text has {pieces.Length - 1} {Tokens.Image} tokens and there are {rows.Count} images: the counts must be equal", nameof(text));
        }
        var expanded = new StringBuilder(pieces[0]);
        for (int i = 0; i < rows.Count; i++)
        {
            expanded.Append(ImageString(rows[i], cols[i])).Append(pieces[i + 1]);
        }
        return expanded.ToString();
    }
}

/// <summary>
/// The three token strings of the image expansion. SmolVLMProcessor takes them from the tokenizer's
/// image_token, fake_image_token and global_image_token attributes, which tokenizer_config.json's
/// extra_special_tokens declares (SmolVLM2 snapshots; a stitched Qwen3 model names Qwen3's reserved
/// &lt;|image_pad|&gt;, &lt;|vision_start|&gt; and &lt;|vision_pad|&gt; there); an absent name keeps
/// Idefics3's string, as the processor's getattr default does.
/// </summary>
public sealed record ImageTokens(string Image, string FakeAroundImage, string Global)
{
    public const string ImageKey = "image_token", FakeAroundImageKey = "fake_image_token", GlobalKey = "global_image_token";

    public const string ExtraSpecialTokensKey = "extra_special_tokens";

    public static ImageTokens Idefics3 { get; } = new(Idefics3Prompt.ImageToken, Idefics3Prompt.FakeImageToken, Idefics3Prompt.GlobalImageToken);

    /// <summary>
    /// The names in <paramref name="tokenizerConfigPath"/>'s extra_special_tokens object; Idefics3's
    /// strings when the file, the field or a name is absent, or when the field is a list (unnamed tokens).
    /// </summary>
    public static ImageTokens Load(string tokenizerConfigPath)
    {
        if (!File.Exists(tokenizerConfigPath))
        {
            return Idefics3;
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(tokenizerConfigPath));
        }
        catch (JsonException e)
        {
            throw new ConfigException(tokenizerConfigPath, "", $"{tokenizerConfigPath}: not valid JSON ({e.Message})");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty(ExtraSpecialTokensKey, out JsonElement extra)
                || extra.ValueKind is JsonValueKind.Null or JsonValueKind.Array)
            {
                return Idefics3;
            }
            if (extra.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException(tokenizerConfigPath, ExtraSpecialTokensKey,
                    $"{tokenizerConfigPath}: {ExtraSpecialTokensKey} is a JSON {extra.ValueKind}, not an object of named tokens");
            }
            string Named(string key, string fallback)
            {
                if (!extra.TryGetProperty(key, out JsonElement token))
                {
                    return fallback;
                }
                string? content = token.ValueKind switch
                {
                    JsonValueKind.String => token.GetString(),
                    JsonValueKind.Object when token.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String => c.GetString(),
                    _ => null,
                };
                return string.IsNullOrEmpty(content)
                    ? throw new ConfigException(tokenizerConfigPath, $"{ExtraSpecialTokensKey}.{key}",
                        $"{tokenizerConfigPath}: {ExtraSpecialTokensKey}.{key} must be a non-empty string or {{\"content\": ...}}, not {token.GetRawText()}")
                    : content;
            }
            return new ImageTokens(Named(ImageKey, Idefics3.Image), Named(FakeAroundImageKey, Idefics3.FakeAroundImage), Named(GlobalKey, Idefics3.Global));
        }
    }
}
