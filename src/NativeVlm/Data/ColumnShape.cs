using Parquet.Schema;

namespace NativeVlm.Data;

/// <summary>
/// The shape a reader expects of a parquet column, checked against each file's schema before any
/// row is read: a wrong or missing column is the file's fault, not a row's.
/// </summary>
internal abstract record ColumnShape
{
    public static ColumnShape Text { get; } = new LeafShape(LeafKind.Text);

    public static ColumnShape Binary { get; } = new LeafShape(LeafKind.Binary);

    public static ColumnShape ListOf(ColumnShape element) => new ListShape(element);

    public static ColumnShape StructOf(params string[] textMembers) =>
        new StructShape(textMembers.Select(name => new StructMember(name, Text)).ToArray());

    public static ColumnShape StructOf(params StructMember[] members) => new StructShape(members);

    /// <summary>The shape in Arrow's notation, for errors: <c>list&lt;struct&lt;bytes: binary, path: string&gt;&gt;</c>.</summary>
    public abstract string Describe();

    /// <summary>
    /// The decoder of <paramref name="field"/> read as this shape. Struct members are matched by name,
    /// in any order, and members this shape does not name are not read. Errors name the column by its
    /// path, a list's element written <c>[]</c>: <c>prompt[].content[].type</c>.
    /// </summary>
    /// <exception cref="DatasetException">The field or one below it is of another shape.</exception>
    public abstract ColumnNode Bind(Field field, string columnPath, string filePath);

    protected DatasetException Mismatch(Field field, string columnPath, string filePath)
    {
        string actual = field switch
        {
            ListField => "a list",
            StructField => "a struct",
            MapField => "a map",
            DataField { IsArray: true } => "a repeated primitive",
            DataField data when data.ClrType == typeof(ReadOnlyMemory<char>) => "string",
            DataField data when data.ClrType == typeof(ReadOnlyMemory<byte>) => "binary",
            DataField data => data.SchemaElement?.Type?.ToString() ?? data.ClrType.Name,
            _ => field.SchemaType.ToString(),
        };
        return new DatasetException(filePath, null, $"column '{columnPath}' is {actual}, expected {Describe()}");
    }
}

internal enum LeafKind
{
    /// <summary>UTF-8 strings (BYTE_ARRAY annotated STRING/UTF8), read as .NET strings.</summary>
    Text,

    /// <summary>Plain BYTE_ARRAY, read as byte arrays.</summary>
    Binary,
}

internal sealed record LeafShape(LeafKind Kind) : ColumnShape
{
    public override string Describe() => Kind == LeafKind.Text ? "string" : "binary";

    public override ColumnNode Bind(Field field, string columnPath, string filePath)
    {
        Type expected = Kind == LeafKind.Text ? typeof(ReadOnlyMemory<char>) : typeof(ReadOnlyMemory<byte>);
        return field is DataField { IsArray: false } data && data.ClrType == expected
            ? new LeafNode(data, Kind, columnPath)
            : throw Mismatch(field, columnPath, filePath);
    }
}

internal sealed record ListShape(ColumnShape Element) : ColumnShape
{
    public override string Describe() => $"list<{Element.Describe()}>";

    public override ColumnNode Bind(Field field, string columnPath, string filePath) =>
        field is ListField list
            ? new ListNode(list, Element.Bind(list.Item, columnPath + "[]", filePath))
            : throw Mismatch(field, columnPath, filePath);
}

internal sealed record StructMember(string Name, ColumnShape Shape);

internal sealed record StructShape(IReadOnlyList<StructMember> Members) : ColumnShape
{
    public override string Describe() =>
        $"struct<{string.Join(", ", Members.Select(member => $"{member.Name}: {member.Shape.Describe()}"))}>";

    public override ColumnNode Bind(Field field, string columnPath, string filePath)
    {
        if (field is not StructField structField)
        {
            throw Mismatch(field, columnPath, filePath);
        }
        var members = new List<(string, ColumnNode)>(Members.Count);
        foreach (StructMember member in Members)
        {
            string memberPath = $"{columnPath}.{member.Name}";
            Field memberField = structField.Fields.FirstOrDefault(candidate => candidate.Name == member.Name)
                ?? throw new DatasetException(filePath, null, $"column '{memberPath}' is missing");
            members.Add((member.Name, member.Shape.Bind(memberField, memberPath, filePath)));
        }
        return new StructNode(structField, members);
    }
}
