using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace NativeVlm.Data;

/// <summary>
/// Reads an image/caption list: a JSON file holding <c>[{"image": path, "caption": text}, ...]</c>,
/// each path absolute or relative to the JSON file's folder. The list is streamed entry by entry and
/// each image file is read when its entry is; other keys of an entry are ignored.
/// </summary>
public static class CaptionListDataset
{
    /// <summary>
    /// The entries in order, each with its image's bytes. A bad entry (not an object, a missing or
    /// non-string image or caption, an empty image path, a blank caption, an image file that cannot be
    /// read) goes to <paramref name="policy"/>; its row is its index in the list.
    /// </summary>
    /// <exception cref="DatasetException">The file is not a JSON list; or a bad entry under strict reading.</exception>
    public static async IAsyncEnumerable<CaptionedRow> ReadAsync(
        string jsonPath, BadRowPolicy policy, DatasetSummary summary, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(jsonPath))!;
        FileStream stream = File.OpenRead(jsonPath);
        await using (stream.ConfigureAwait(false))
        {
            IAsyncEnumerator<JsonElement> entries = JsonSerializer
                .DeserializeAsyncEnumerable(stream, CaptionListJson.Default.JsonElement, cancellationToken)
                .GetAsyncEnumerator(cancellationToken);
            await using (entries.ConfigureAwait(false))
            {
                for (long index = 0; await MoveNextAsync(entries, jsonPath).ConfigureAwait(false); index++)
                {
                    var location = new RowLocation(jsonPath, index);
                    JsonElement entry = entries.Current;
                    CaptionedRow? row = RowMapping.MapOrReject(location, () => ToRow(location, entry, folder), policy, summary);
                    if (row is not null)
                    {
                        yield return row;
                    }
                }
            }
        }
    }

    private static async Task<bool> MoveNextAsync(IAsyncEnumerator<JsonElement> entries, string jsonPath)
    {
        try
        {
            return await entries.MoveNextAsync().ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw new DatasetException(jsonPath, null, $"not a JSON list of {{\"image\", \"caption\"}} objects ({e.Message})", e);
        }
    }

    private static CaptionedRow ToRow(RowLocation location, JsonElement entry, string folder)
    {
        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw new BadRowException(BadRowReason.WrongType, $"the entry is a JSON {entry.ValueKind}, not an object");
        }
        string image = RequireString(entry, "image");
        if (image.Length == 0)
        {
            throw new BadRowException(BadRowReason.InvalidValue, "image is an empty path");
        }
        string caption = RequireString(entry, "caption");
        if (string.IsNullOrWhiteSpace(caption))
        {
            throw new BadRowException(BadRowReason.EmptyCompletion, "caption has no text");
        }
        string imagePath = Path.GetFullPath(Path.Combine(folder, image));
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(imagePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BadRowException(BadRowReason.MissingImage, $"image {imagePath} cannot be read ({e.Message})");
        }
        if (bytes.Length == 0)
        {
            throw new BadRowException(BadRowReason.MissingImage, $"image {imagePath} is empty");
        }
        return new CaptionedRow(location, new DatasetImage(bytes, imagePath), caption);
    }

    private static string RequireString(JsonElement entry, string key)
    {
        if (!entry.TryGetProperty(key, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            throw new BadRowException(BadRowReason.MissingField, $"{key} is missing");
        }
        return value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : throw new BadRowException(BadRowReason.WrongType, $"{key} is a JSON {value.ValueKind}, not a string");
    }
}

/// <summary>Source-generated metadata: the library is trimmed/AOT-compatible, so no reflection-based JSON.</summary>
[JsonSerializable(typeof(JsonElement))]
internal sealed partial class CaptionListJson : JsonSerializerContext;
