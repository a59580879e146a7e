using System.Runtime.CompilerServices;
using System.Text.Json;
using NativeVlm.Data;
using NativeVlm.Vision;

namespace NativeVlm.Generation;

/// <summary>
/// The prompts of a samples file, in file order:
/// <list type="bullet">
/// <item>a JSON list <c>[{"images": [path, ...], "prompt": "..."}, ...]</c> (images optional, paths absolute
/// or relative to the JSON file's folder): one user message with the images, then the prompt;</item>
/// <item>parquet in the rlaif-v layout (a <c>prompt</c> column): the prompt messages, the chosen
/// completion as the reference;</item>
/// <item>parquet in the_cauldron layout (a <c>texts</c> column): the first user turn with the images,
/// its assistant answer as the reference — what the seeds' generate_text_from_sample generates from a
/// test sample (the messages up to the first assistant turn, with the generation prompt).</item>
/// </list>
/// Bad parquet rows go to the policy as the training readers send them; a bad JSON entry is an error
/// naming the file and the entry's index.
/// </summary>
public static class GenerationSamples
{
    public static IAsyncEnumerable<GenerationPrompt> ReadAsync(GenerationPrompts prompts, string path, string split,
        BadRowPolicy policy, DatasetSummary summary, CancellationToken cancellationToken = default)
    {
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            if (split != "train")
            {
                throw new ArgumentException($"split '{split}': a JSON samples list is read whole (split 'train')");
            }
            return ReadJson(prompts, path).ToAsyncEnumerable();
        }
        return ReadParquetAsync(prompts, path, split, policy, summary, cancellationToken);
    }

    private static IEnumerable<GenerationPrompt> ReadJson(GenerationPrompts prompts, string path)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new DatasetException(path, null, $"not valid JSON ({e.Message})");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Array)
            {
                throw new DatasetException(path, null, $"must be a JSON list of {{\"images\": [...], \"prompt\": \"...\"}}, is a {document.RootElement.ValueKind}");
            }
            int index = 0;
            foreach (JsonElement entry in document.RootElement.EnumerateArray())
            {
                (string prompt, List<string> images) = ReadEntry(entry, path, index);
                List<DecodedImage> decoded = images.Select(image => ImageDecoder.DecodeFile(Path.Combine(folder, image))).ToList();
                var content = Enumerable.Repeat(ContentItem.ImagePlaceholder, decoded.Count).Append(ContentItem.FromText(prompt)).ToList();
                yield return prompts.Build($"{path}: row {index}", [new ChatMessage("user", content)], decoded, reference: null);
                index++;
            }
        }
    }

    private static (string Prompt, List<string> Images) ReadEntry(JsonElement entry, string path, int index)
    {
        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw new DatasetException(path, index, $"is a JSON {entry.ValueKind}, not an object");
        }
        if (!entry.TryGetProperty("prompt", out JsonElement prompt) || prompt.ValueKind != JsonValueKind.String)
        {
            throw new DatasetException(path, index, "prompt is missing or not a string");
        }
        var images = new List<string>();
        if (entry.TryGetProperty("images", out JsonElement list) && list.ValueKind != JsonValueKind.Null)
        {
            if (list.ValueKind != JsonValueKind.Array)
            {
                throw new DatasetException(path, index, $"images is a JSON {list.ValueKind}, not a list of paths");
            }
            foreach (JsonElement image in list.EnumerateArray())
            {
                images.Add(image.ValueKind == JsonValueKind.String && image.GetString() is { Length: > 0 } imagePath
                    ? imagePath
                    : throw new DatasetException(path, index, $"images[{images.Count}] is not a non-empty path string"));
            }
        }
        return (prompt.GetString()!, images);
    }

    private static async IAsyncEnumerable<GenerationPrompt> ReadParquetAsync(GenerationPrompts prompts, string path, string split,
        BadRowPolicy policy, DatasetSummary summary, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ParquetSplit rows = await ParquetSplit.OpenAsync(path, split, cancellationToken).ConfigureAwait(false);
        IReadOnlyList<string> columns = await ColumnsAsync(rows.Files[0].FilePath, cancellationToken).ConfigureAwait(false);
        if (columns.Contains("prompt"))
        {
            await foreach (PreferenceRow row in PreferenceDataset.ReadAsync(rows, policy, summary, cancellationToken).ConfigureAwait(false))
            {
                yield return prompts.Build(Source(row.Location), row.Prompt, Decode(row.Images, row.Location), string.Concat(row.Chosen.Select(m => m.Text)));
            }
        }
        else if (columns.Contains("texts"))
        {
            await foreach (ConversationRow row in ConversationDataset.ReadAsync(rows, policy, summary, cancellationToken).ConfigureAwait(false))
            {
                List<ChatMessage> messages = row.ToMessages().TakeWhile(m => m.Role != "assistant").ToList();
                yield return prompts.Build(Source(row.Location), messages, Decode(row.Images, row.Location), row.Turns[0].Assistant);
            }
        }
        else
        {
            throw new DatasetException(rows.Files[0].FilePath, null,
                $"neither a 'prompt' column (rlaif-v layout) nor a 'texts' column (the_cauldron layout); the file has {string.Join(", ", columns)}");
        }
    }

    private static async Task<IReadOnlyList<string>> ColumnsAsync(string filePath, CancellationToken cancellationToken)
    {
        Parquet.ParquetReader reader = await ParquetRows.OpenReaderAsync(filePath, cancellationToken).ConfigureAwait(false);
        await using (reader.ConfigureAwait(false))
        {
            return reader.Schema.Fields.Select(field => field.Name).ToList();
        }
    }

    private static string Source(RowLocation location) => $"{location.FilePath}: row {location.Row}";

    private static List<DecodedImage> Decode(IReadOnlyList<DatasetImage> images, RowLocation location) =>
        images.Select((image, i) => ImageDecoder.Decode(image.Bytes, $"{Source(location)}: images[{i}]{(image.Path is null ? "" : $" ({image.Path})")}")).ToList();
}
