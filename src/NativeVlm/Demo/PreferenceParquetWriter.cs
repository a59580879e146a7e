using NativeVlm.Data;
using Parquet;
using Parquet.Schema;

namespace NativeVlm.Demo;

/// <summary>
/// Writes preference rows as Hugging Face's rlaif-v parquet (as datasets and pyarrow write
/// HuggingFaceH4/rlaif-v_formatted): columns chosen, rejected, images, prompt; messages are
/// list&lt;struct&lt;content: list&lt;struct&lt;text, type&gt;&gt;, role&gt;&gt;, images list&lt;struct&lt;bytes, path&gt;&gt;;
/// 3-level lists named "list"/"element" (pyarrow ≥ 13); the datasets features under the file
/// metadata's "huggingface" key.
/// </summary>
/// <remarks>
/// Each leaf column is shredded into its definition and repetition levels here and written with the
/// closed generic <see cref="ParquetRowGroupWriter.WriteAllPartsAsync{T}"/>: Parquet.Net's
/// ParquetSerializer builds its writers from expression trees over runtime-made generic types, which
/// fail under NativeAOT.
/// </remarks>
internal static class PreferenceParquetWriter
{
    private const string ElementName = "element";
    private const string ValueString = """{"dtype": "string", "_type": "Value"}""";
    private const string MessagesFeature = $$"""[{"content": [{"text": {{ValueString}}, "type": {{ValueString}}}], "role": {{ValueString}} }]""";
    private const string ImagesFeature = """{"feature": {"_type": "Image"}, "_type": "Sequence"}""";

    private const string Features = "{\"info\": {\"features\": {\"chosen\": " + MessagesFeature + ", \"rejected\": " + MessagesFeature
        + ", \"images\": " + ImagesFeature + ", \"prompt\": " + MessagesFeature + "}}}";

    /// <summary>One row: the same fields PreferenceDataset reads back.</summary>
    public sealed record Row(
        IReadOnlyList<ChatMessage> Prompt, IReadOnlyList<ChatMessage> Chosen, IReadOnlyList<ChatMessage> Rejected, IReadOnlyList<DatasetImage> Images);

    /// <summary>Creates <paramref name="path"/> holding <paramref name="rows"/> in one row group.</summary>
    public static async Task WriteAsync(string path, IReadOnlyList<Row> rows, CancellationToken cancellationToken)
    {
        var chosen = new MessagesColumn("chosen");
        var rejected = new MessagesColumn("rejected");
        var images = new ImagesColumn();
        var prompt = new MessagesColumn("prompt");
        foreach (Row row in rows)
        {
            chosen.Add(row.Chosen);
            rejected.Add(row.Rejected);
            images.Add(row.Images);
            prompt.Add(row.Prompt);
        }

        // The schema computes each leaf's maximum levels, which the leaves' definition levels are made from.
        var schema = new ParquetSchema(chosen.Field, rejected.Field, images.Field, prompt.Field);
        await using FileStream stream = File.Create(path);
        await using ParquetWriter writer = await ParquetWriter.CreateAsync(schema, stream, cancellationToken: cancellationToken).ConfigureAwait(false);
        writer.CustomMetadata = new Dictionary<string, string> { ["huggingface"] = Features };
        using ParquetRowGroupWriter rowGroup = writer.CreateRowGroup();
        await chosen.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
        await rejected.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
        await images.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
        await prompt.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
        rowGroup.CompleteValidate();
    }

    /// <summary>
    /// A list column's repetition level for an element: 0 starts a new row, otherwise the depth of the
    /// innermost list that gains an element there (1 the column's own list, 2 a list inside its elements).
    /// </summary>
    private static int Repetition(int outerIndex, int innerIndex) => innerIndex > 0 ? 2 : outerIndex > 0 ? 1 : 0;

    private static void RequireElements<T>(IReadOnlyList<T> list, string column)
    {
        // The leaves' levels below assume every list has elements and every struct is present; an empty
        // list would need its own definition level, which no caller writes.
        if (list.Count == 0)
        {
            throw new ArgumentException($"column '{column}' has an empty list; every list written must have elements");
        }
    }

    /// <summary>A messages column: list&lt;struct&lt;content: list&lt;struct&lt;text, type&gt;&gt;, role&gt;&gt;.</summary>
    private sealed class MessagesColumn
    {
        private readonly LeafColumn<ReadOnlyMemory<char>> _text = new(new DataField<string>("text"));
        private readonly LeafColumn<ReadOnlyMemory<char>> _type = new(new DataField<string>("type"));
        private readonly LeafColumn<ReadOnlyMemory<char>> _role = new(new DataField<string>("role"));

        public MessagesColumn(string name) =>
            Field = new ListField(name, new StructField(ElementName,
                new ListField("content", new StructField(ElementName, _text.Field, _type.Field)),
                _role.Field));

        public ListField Field { get; }

        public void Add(IReadOnlyList<ChatMessage> messages)
        {
            RequireElements(messages, Field.Name);
            for (int m = 0; m < messages.Count; m++)
            {
                RequireElements(messages[m].Content, Field.Name + ".content");
                for (int i = 0; i < messages[m].Content.Count; i++)
                {
                    ContentItem item = messages[m].Content[i];
                    _text.Add(item.Text?.AsMemory(), Repetition(m, i));
                    _type.Add((item.Kind == ContentKind.Image ? "image" : "text").AsMemory(), Repetition(m, i));
                }
                _role.Add(messages[m].Role.AsMemory(), Repetition(m, 0));
            }
        }

        /// <summary>Writes the leaves in schema order: content's text and type, then role.</summary>
        public async Task WriteAsync(ParquetRowGroupWriter rowGroup, CancellationToken cancellationToken)
        {
            await _text.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
            await _type.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
            await _role.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The images column: list&lt;struct&lt;bytes: binary, path: string&gt;&gt;.</summary>
    private sealed class ImagesColumn
    {
        private readonly LeafColumn<ReadOnlyMemory<byte>> _bytes = new(new DataField<byte[]>("bytes"));
        private readonly LeafColumn<ReadOnlyMemory<char>> _path = new(new DataField<string>("path"));

        public ImagesColumn() => Field = new ListField("images", new StructField(ElementName, _bytes.Field, _path.Field));

        public ListField Field { get; }

        public void Add(IReadOnlyList<DatasetImage> images)
        {
            RequireElements(images, Field.Name);
            for (int i = 0; i < images.Count; i++)
            {
                _bytes.Add(images[i].Bytes.AsMemory(), Repetition(i, 0));
                _path.Add(images[i].Path?.AsMemory(), Repetition(i, 0));
            }
        }

        public async Task WriteAsync(ParquetRowGroupWriter rowGroup, CancellationToken cancellationToken)
        {
            await _bytes.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
            await _path.WriteAsync(rowGroup, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// One optional leaf below lists that all have elements and structs that are all present: a null
    /// value is defined down to its struct (one below the leaf's maximum level), any other to the leaf.
    /// </summary>
    private sealed class LeafColumn<T>(DataField field)
        where T : struct
    {
        private readonly List<T?> _values = [];
        private readonly List<int> _repetitions = [];

        public DataField Field { get; } = field;

        public void Add(T? value, int repetition)
        {
            _values.Add(value);
            _repetitions.Add(repetition);
        }

        public Task WriteAsync(ParquetRowGroupWriter rowGroup, CancellationToken cancellationToken)
        {
            int[] definitions = _values.Select(value => value.HasValue ? Field.MaxDefinitionLevel : Field.MaxDefinitionLevel - 1).ToArray();
            // Only the present values are stored; the definition levels place them.
            T[] present = _values.Where(value => value.HasValue).Select(value => value!.Value).ToArray();
            return rowGroup.WriteAllPartsAsync<T>(Field, present, definitions, _repetitions.ToArray(), cancellationToken);
        }
    }
}
