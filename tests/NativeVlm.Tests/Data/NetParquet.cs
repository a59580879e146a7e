using NativeVlm.Data;
using Parquet;
using Parquet.Schema;
using Parquet.Serialization;

namespace NativeVlm.Tests.Data;

/// <summary>
/// Writes parquet with Parquet.Net in exactly the layout pyarrow gives Hugging Face datasets: every
/// level optional, 3-level LISTs whose repeated group is "list" and whose element is "element"
/// (pyarrow ≥ 13) or "item" (older pyarrow), and the "huggingface" key in the file's metadata.
/// </summary>
internal static class NetParquet
{
    private const string ValueString = """{"dtype": "string", "_type": "Value"}""";
    private const string MessagesFeature = $$"""[{"content": [{"text": {{ValueString}}, "type": {{ValueString}}}], "role": {{ValueString}} }]""";
    private const string ImagesFeature = """{"feature": {"_type": "Image"}, "_type": "Sequence"}""";

    private static readonly string PreferenceFeatures =
        Features(("chosen", MessagesFeature), ("rejected", MessagesFeature), ("images", ImagesFeature), ("prompt", MessagesFeature));

    private static readonly string ConversationFeatures = Features(
        ("images", ImagesFeature),
        ("texts", $$"""[{"user": {{ValueString}}, "assistant": {{ValueString}}, "source": {{ValueString}} }]"""));

    /// <summary>What datasets stores under the "huggingface" key: <c>{"info": {"features": {...}}}</c>.</summary>
    private static string Features(params (string Column, string Feature)[] columns) =>
        "{\"info\": {\"features\": {" + string.Join(", ", columns.Select(column => $"\"{column.Column}\": {column.Feature}")) + "}}}";

    public static Task WritePreferenceAsync(string path, IEnumerable<PreferenceRow> rows, int rowGroupSize, string elementName = "element")
    {
        var schema = new ParquetSchema(
            MessagesField("chosen", elementName), MessagesField("rejected", elementName), ImagesField(elementName), MessagesField("prompt", elementName));
        List<IDictionary<string, object?>> data = rows.Select(row => (IDictionary<string, object?>)new Dictionary<string, object?>
        {
            ["chosen"] = Messages(row.Chosen),
            ["rejected"] = Messages(row.Rejected),
            ["images"] = Images(row.Images),
            ["prompt"] = Messages(row.Prompt),
        }).ToList();
        return WriteAsync(path, schema, data, rowGroupSize, PreferenceFeatures);
    }

    public static Task WriteConversationAsync(string path, IEnumerable<ConversationRow> rows, int rowGroupSize, string elementName = "element")
    {
        var schema = new ParquetSchema(
            ImagesField(elementName),
            new ListField("texts", new StructField(elementName, new DataField<string>("user"), new DataField<string>("assistant"), new DataField<string>("source"))));
        List<IDictionary<string, object?>> data = rows.Select(row => (IDictionary<string, object?>)new Dictionary<string, object?>
        {
            ["images"] = Images(row.Images),
            ["texts"] = row.Turns
                .Select(turn => new Dictionary<string, object?> { ["user"] = turn.User, ["assistant"] = turn.Assistant, ["source"] = turn.Source })
                .ToList(),
        }).ToList();
        return WriteAsync(path, schema, data, rowGroupSize, ConversationFeatures);
    }

    private static async Task WriteAsync(string path, ParquetSchema schema, List<IDictionary<string, object?>> data, int rowGroupSize, string features)
    {
        await using FileStream stream = File.Create(path);
        await ParquetSerializer.SerializeUntypedAsync(
            data, schema, stream, new ParquetOptions { RowGroupSize = rowGroupSize }, new Dictionary<string, string> { ["huggingface"] = features });
    }

    private static ListField MessagesField(string name, string elementName) =>
        new(name, new StructField(elementName,
            new ListField("content", new StructField(elementName, new DataField<string>("text"), new DataField<string>("type"))),
            new DataField<string>("role")));

    private static ListField ImagesField(string elementName) =>
        new("images", new StructField(elementName, new DataField<byte[]>("bytes"), new DataField<string>("path")));

    private static List<Dictionary<string, object?>> Messages(IReadOnlyList<ChatMessage> messages) =>
        messages.Select(message => new Dictionary<string, object?>
        {
            ["content"] = message.Content
                .Select(item => new Dictionary<string, object?> { ["text"] = item.Text, ["type"] = item.Kind == ContentKind.Image ? "image" : "text" })
                .ToList(),
            ["role"] = message.Role,
        }).ToList();

    // Parquet.Net's untyped serializer takes binary values as ReadOnlyMemory<byte>.
    private static List<Dictionary<string, object?>> Images(IReadOnlyList<DatasetImage> images) =>
        images.Select(image => new Dictionary<string, object?> { ["bytes"] = (ReadOnlyMemory<byte>)image.Bytes, ["path"] = image.Path }).ToList();
}
