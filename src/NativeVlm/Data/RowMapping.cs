using System.Runtime.CompilerServices;

namespace NativeVlm.Data;

/// <summary>A row that breaks its format, found while mapping it; the reader turns it into a <see cref="BadRow"/>.</summary>
internal sealed class BadRowException(BadRowReason reason, string detail) : Exception(detail)
{
    public BadRowReason Reason { get; } = reason;
}

/// <summary>
/// From decoded values to typed rows: checks that name the offending value by its path in the row
/// (<c>prompt[0].content[1].text is null</c>), and the loop that counts and rejects bad rows.
/// </summary>
internal static class RowMapping
{
    /// <summary>Every row of <paramref name="split"/> that <paramref name="map"/> accepts; the others go to the policy.</summary>
    public static async IAsyncEnumerable<T> ReadAsync<T>(
        ParquetSplit split,
        IReadOnlyList<ColumnRequest> columns,
        Func<ParquetRow, T> map,
        BadRowPolicy policy,
        DatasetSummary summary,
        [EnumeratorCancellation] CancellationToken cancellationToken)
        where T : class
    {
        foreach (ParquetFileRows range in split.Files)
        {
            await foreach (ParquetRow row in ParquetRows.ReadAsync(range, columns, cancellationToken).ConfigureAwait(false))
            {
                T? mapped = MapOrReject(row.Location, () => map(row), policy, summary);
                if (mapped is not null)
                {
                    yield return mapped;
                }
            }
        }
    }

    /// <summary>Counts the row as read and maps it; a bad row is rejected (null) or, strict, thrown.</summary>
    public static T? MapOrReject<T>(RowLocation location, Func<T> map, BadRowPolicy policy, DatasetSummary summary)
        where T : class
    {
        summary.CountRead();
        try
        {
            return map();
        }
        catch (BadRowException e)
        {
            policy.Reject(new BadRow(location, e.Reason, e.Message), summary);
            return null;
        }
    }

    public static string RequireText(object? value, string path) => value as string ?? throw Missing(path);

    public static IReadOnlyList<object?> RequireList(object? value, string path) => value as IReadOnlyList<object?> ?? throw Missing(path);

    public static IReadOnlyDictionary<string, object?> RequireStruct(object? value, string path) =>
        value as IReadOnlyDictionary<string, object?> ?? throw Missing(path);

    /// <summary>The Hugging Face message list <c>list&lt;struct&lt;content: list&lt;struct&lt;text, type&gt;&gt;, role&gt;&gt;</c>.</summary>
    public static ColumnShape MessagesShape { get; } = ColumnShape.ListOf(ColumnShape.StructOf(
        new StructMember("content", ColumnShape.ListOf(ColumnShape.StructOf("text", "type"))),
        new StructMember("role", ColumnShape.Text)));

    /// <summary>A list of Hugging Face Image features, <c>list&lt;struct&lt;bytes: binary, path: string&gt;&gt;</c>.</summary>
    public static ColumnShape ImagesShape { get; } = ColumnShape.ListOf(ColumnShape.StructOf(
        new StructMember("bytes", ColumnShape.Binary),
        new StructMember("path", ColumnShape.Text)));

    /// <summary>A value of <see cref="MessagesShape"/>: every message has a role and content; each item is a text with its text, or an image.</summary>
    public static IReadOnlyList<ChatMessage> ToMessages(object? value, string path)
    {
        IReadOnlyList<object?> list = RequireList(value, path);
        var messages = new List<ChatMessage>(list.Count);
        for (int i = 0; i < list.Count; i++)
        {
            string messagePath = $"{path}[{i}]";
            IReadOnlyDictionary<string, object?> message = RequireStruct(list[i], messagePath);
            string role = RequireText(message["role"], $"{messagePath}.role");
            if (role.Length == 0)
            {
                throw new BadRowException(BadRowReason.InvalidValue, $"{messagePath}.role is empty");
            }
            IReadOnlyList<object?> content = RequireList(message["content"], $"{messagePath}.content");
            var items = new List<ContentItem>(content.Count);
            for (int j = 0; j < content.Count; j++)
            {
                items.Add(ToContentItem(content[j], $"{messagePath}.content[{j}]"));
            }
            messages.Add(new ChatMessage(role, items));
        }
        return messages;
    }

    private static ContentItem ToContentItem(object? value, string path)
    {
        IReadOnlyDictionary<string, object?> item = RequireStruct(value, path);
        return RequireText(item["type"], $"{path}.type") switch
        {
            "text" => ContentItem.FromText(RequireText(item["text"], $"{path}.text")),
            "image" => ContentItem.ImagePlaceholder,
            string other => throw new BadRowException(BadRowReason.InvalidValue, $"{path}.type is '{other}', neither 'text' nor 'image'"),
        };
    }

    /// <summary>A value of <see cref="ImagesShape"/>: a list (possibly empty) of images that all have bytes.</summary>
    public static IReadOnlyList<DatasetImage> ToImages(object? value, string path)
    {
        IReadOnlyList<object?> list = RequireList(value, path);
        var images = new List<DatasetImage>(list.Count);
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is not IReadOnlyDictionary<string, object?> image)
            {
                throw new BadRowException(BadRowReason.MissingImage, $"{path}[{i}] is null");
            }
            string? imagePath = image["path"] as string;
            if (image["bytes"] is not byte[] { Length: > 0 } bytes)
            {
                string only = imagePath is null ? "" : $" (only a path, '{imagePath}')";
                throw new BadRowException(BadRowReason.MissingImage, $"{path}[{i}] has no bytes{only}");
            }
            images.Add(new DatasetImage(bytes, imagePath));
        }
        return images;
    }

    /// <summary>A completion must say something: some text that is not white space.</summary>
    public static void RequireCompletionText(IReadOnlyList<ChatMessage> completion, string path)
    {
        if (completion.All(message => string.IsNullOrWhiteSpace(message.Text)))
        {
            string what = completion.Count == 0 ? "no message" : "no text";
            throw new BadRowException(BadRowReason.EmptyCompletion, $"{path} has {what}");
        }
    }

    private static BadRowException Missing(string path) => new(BadRowReason.MissingField, $"{path} is null");
}
