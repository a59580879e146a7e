using System.Text;
using System.Text.Json;
using NativeVlm.Models;

namespace NativeVlm.Vision;

/// <summary>
/// Idefics3Processor's expansion of each <c>&lt;image&gt;</c> in a prompt: per tile, row by row,
/// <c>&lt;fake_token_around_image&gt;&lt;row_r_col_c&gt;</c> and image_seq_len <c>&lt;image&gt;</c>
/// tokens, a newline after each row, then a blank line and the global image
/// (<c>&lt;fake_token_around_image&gt;&lt;global-img&gt;</c>, the image tokens, <c>&lt;fake_token_around_image&gt;</c>);
/// an image that was not split (0 rows, 0 columns) is the global image alone.
/// </summary>
public sealed class Idefics3Prompt
{
    public const string FileName = "processor_config.json";

    public const string ImageToken = "<image>";

    public const string FakeImageToken = "<fake_token_around_image>";

    public const string GlobalImageToken = "<global-img>";

    /// <summary>Idefics3Processor's default when processor_config.json does not set image_seq_len.</summary>
    public const int DefaultImageSeqLen = 169;

    public Idefics3Prompt(int imageSeqLen)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageSeqLen);
        ImageSeqLen = imageSeqLen;
    }

    /// <summary>Image tokens per frame: (image_size / patch_size)² / scale_factor².</summary>
    public int ImageSeqLen { get; }

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

    /// <summary>The text that replaces one <c>&lt;image&gt;</c> of an image split into rows × cols tiles.</summary>
    public string ImageString(int rows, int cols)
    {
        string imageTokens = string.Concat(Enumerable.Repeat(ImageToken, ImageSeqLen));
        var text = new StringBuilder();
        if (rows != 0 || cols != 0)
        {
            for (int r = 1; r <= rows; r++)
            {
                for (int c = 1; c <= cols; c++)
                {
                    text.Append(FakeImageToken).Append($"<row_{r}_col_{c}>").Append(imageTokens);
                }
                text.Append('\n');
            }
            text.Append('\n');
        }
        return text.Append(FakeImageToken).Append(GlobalImageToken).Append(imageTokens).Append(FakeImageToken).ToString();
    }

    /// <summary>
    /// Replaces the i-th <c>&lt;image&gt;</c> of <paramref name="text"/> with image i's string; as
    /// Idefics3Processor, the counts of placeholders and images must agree.
    /// </summary>
    public string Expand(string text, IReadOnlyList<int> rows, IReadOnlyList<int> cols)
    {
        if (rows.Count != cols.Count)
        {
            throw new ArgumentException($"{rows.Count} row counts but {cols.Count} column counts", nameof(cols));
        }
        string[] pieces = text.Split(ImageToken);
        if (pieces.Length - 1 != rows.Count)
        {
            throw new ArgumentException(
                $"the text has {pieces.Length - 1} {ImageToken} tokens and there are {rows.Count} images: the counts must be equal", nameof(text));
        }
        var expanded = new StringBuilder(pieces[0]);
        for (int i = 0; i < rows.Count; i++)
        {
            expanded.Append(ImageString(rows[i], cols[i])).Append(pieces[i + 1]);
        }
        return expanded.ToString();
    }
}
