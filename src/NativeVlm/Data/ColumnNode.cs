using System.Diagnostics;
using Parquet;
using Parquet.Schema;

namespace NativeVlm.Data;

/// <summary>
/// Decodes one (possibly nested) column of a row group from the definition and repetition levels of
/// its leaf columns (Dremel record assembly). Every leaf below a node holds exactly one level entry
/// for each null, empty or present value of that node, so a node is decoded by reading the next entry
/// of its first leaf, and a null or empty one is passed over by advancing every leaf below it by one.
/// Values come out as: null; a string or byte[] (leaves); a list of values (lists); a name → value
/// dictionary (structs).
/// </summary>
internal abstract class ColumnNode
{
    protected ColumnNode(int presentLevel) => PresentLevel = presentLevel;

    /// <summary>The definition level from which this value is not null.</summary>
    public int PresentLevel { get; }

    /// <summary>The leaf columns below this node (itself for a leaf), in schema order; never empty.</summary>
    public abstract IReadOnlyList<LeafNode> Leaves { get; }

    public object? Decode()
    {
        int definition = Leaves[0].PeekDefinition();
        if (definition < PresentLevel)
        {
            SkipEntry();
            return null;
        }
        return DecodePresent(definition);
    }

    protected abstract object DecodePresent(int definition);

    protected void SkipEntry()
    {
        foreach (LeafNode leaf in Leaves)
        {
            leaf.Advance();
        }
    }
}

/// <summary>A string or binary leaf column, loaded one row group at a time.</summary>
internal sealed class LeafNode : ColumnNode
{
    private readonly DataField _field;
    private readonly LeafKind _kind;
    private int[] _definitions = [];
    private int[] _repetitions = [];
    private object[] _values = [];
    private int _position;
    private int _valueIndex;

    public LeafNode(DataField field, LeafKind kind, string columnPath)
        : base(field.MaxDefinitionLevel)
    {
        _field = field;
        _kind = kind;
        ColumnPath = columnPath;
        Leaves = [this];
    }

    public override IReadOnlyList<LeafNode> Leaves { get; }

    public string ColumnPath { get; }

    public bool AtEnd => _position == _definitions.Length;

    /// <summary>Reads this column of <paramref name="rowGroup"/>; values are copied out of the read buffer.</summary>
    public async Task LoadAsync(ParquetRowGroupReader rowGroup, CancellationToken cancellationToken)
    {
        // One closed generic call per kind (LeafShape.Bind has checked the field's ClrType), not
        // ReadRawColumnDataBaseAsync: that instantiates its generic reader by MakeGenericMethod, which
        // has no native code under NativeAOT.
        (_definitions, _repetitions, _values) = _kind switch
        {
            LeafKind.Text => await ReadAsync<ReadOnlyMemory<char>>(rowGroup, text => text.ToString(), cancellationToken).ConfigureAwait(false),
            LeafKind.Binary => await ReadAsync<ReadOnlyMemory<byte>>(rowGroup, bytes => bytes.ToArray(), cancellationToken).ConfigureAwait(false),
            _ => throw new UnreachableException($"leaf kind {_kind}"),
        };
        _position = 0;
        _valueIndex = 0;
    }

    /// <summary>The column's level entries and its present values, each copied by <paramref name="copy"/>.</summary>
    private async Task<(int[] Definitions, int[] Repetitions, object[] Values)> ReadAsync<T>(
        ParquetRowGroupReader rowGroup, Func<T, object> copy, CancellationToken cancellationToken)
        where T : struct
    {
        // The chunk's value count is its number of level entries, nulls and empty lists included: the
        // length ReadRawAsync requires of each buffer it is given.
        long entryCount = rowGroup.GetMetadata(_field)?.MetaData?.NumValues
            ?? throw new InvalidDataException($"column '{ColumnPath}' has no column chunk metadata");
        var values = new T[entryCount];
        // A required column has no definition levels (all are 0), an unrepeated one no repetition levels;
        // a repeated column always has definition levels (its empty lists), so both arrays are as long.
        int[] definitions = new int[_field.MaxDefinitionLevel > 0 ? entryCount : rowGroup.RowCount];
        int[] repetitions = new int[definitions.Length];
        Memory<int>? definitionBuffer = _field.MaxDefinitionLevel > 0 ? definitions.AsMemory() : null;
        Memory<int>? repetitionBuffer = _field.MaxRepetitionLevel > 0 ? repetitions.AsMemory() : null;
        await rowGroup.ReadRawAsync<T>(_field, values, definitionBuffer, repetitionBuffer, cancellationToken).ConfigureAwait(false);
        // ReadRawAsync packs the non-null values at the front of the buffer.
        int present = definitions.Count(level => level == _field.MaxDefinitionLevel);
        if (present > values.Length)
        {
            throw new InvalidDataException($"column '{ColumnPath}' has {values.Length} values, fewer than its {present} present ones");
        }
        return (definitions, repetitions, values[..present].Select(copy).ToArray());
    }

    public int PeekDefinition() => _definitions[CheckedPosition()];

    public int PeekRepetition() => _repetitions[CheckedPosition()];

    public void Advance() => _position = CheckedPosition() + 1;

    protected override object DecodePresent(int definition)
    {
        object value = _values[_valueIndex++];
        Advance();
        return value;
    }

    private int CheckedPosition() =>
        _position < _definitions.Length
            ? _position
            : throw new InvalidDataException($"column '{ColumnPath}' has fewer level entries than the row group's other columns need");
}

/// <summary>
/// A LIST: definition level MaxDefinitionLevel − 1 is an empty list, MaxDefinitionLevel and above a
/// list with elements; each further element starts at the list's repetition level.
/// </summary>
internal sealed class ListNode(ListField field, ColumnNode element) : ColumnNode(field.MaxDefinitionLevel - 1)
{
    public override IReadOnlyList<LeafNode> Leaves => element.Leaves;

    protected override object DecodePresent(int definition)
    {
        var items = new List<object?>();
        if (definition == PresentLevel)
        {
            SkipEntry();
            return items;
        }
        do
        {
            items.Add(element.Decode());
        }
        while (!Leaves[0].AtEnd && Leaves[0].PeekRepetition() == field.MaxRepetitionLevel);
        return items;
    }
}

/// <summary>A struct: each named member decoded in turn from its own leaves.</summary>
internal sealed class StructNode(StructField field, IReadOnlyList<(string Name, ColumnNode Node)> members)
    : ColumnNode(field.MaxDefinitionLevel)
{
    public override IReadOnlyList<LeafNode> Leaves { get; } = members.SelectMany(member => member.Node.Leaves).ToList();

    protected override object DecodePresent(int definition)
    {
        var values = new Dictionary<string, object?>(members.Count, StringComparer.Ordinal);
        foreach ((string name, ColumnNode node) in members)
        {
            values[name] = node.Decode();
        }
        return values;
    }
}
