using System.Text.Json;

namespace NativeVlm.Text;

/// <summary>
/// One JSON value of a tokenizer.json with its path, so that every complaint names the file and the
/// component ("tokenizer.json: pre_tokenizer.pretokenizers[1].type = 'Metaspace' is not supported").
/// </summary>
internal readonly struct TokenizerJson(string filePath, string path, JsonElement value)
{
    public string FilePath { get; } = filePath;

    /// <summary>"" for the root, "model.merges[3]" deeper down.</summary>
    public string Path { get; } = path;

    public JsonElement Value { get; } = value;

    public bool IsNull => Value.ValueKind == JsonValueKind.Null;

    public TokenizerException Error(string detail) =>
        new(FilePath, Path, Path.Length == 0 ? $"{FilePath}: {detail}" : $"{FilePath}: {Path} {detail}");

    private string ChildPath(string key) => Path.Length == 0 ? key : $"{Path}.{key}";

    /// <summary>The field; null when it is absent (a JSON null comes back as a value whose <see cref="IsNull"/> is true).</summary>
    public TokenizerJson? Field(string key)
    {
        if (Value.ValueKind != JsonValueKind.Object)
        {
            throw Error($"must be an object, not {Value.ValueKind}");
        }
        return Value.TryGetProperty(key, out JsonElement child) ? new TokenizerJson(FilePath, ChildPath(key), child) : null;
    }

    public TokenizerJson Required(string key) => Field(key) is { IsNull: false } child ? child : throw Error($"has no '{key}'");

    public string String() => Value.ValueKind == JsonValueKind.String ? Value.GetString()! : throw Error($"must be a string, not {Value.ValueKind}");

    public int Int() => Value.ValueKind == JsonValueKind.Number && Value.TryGetInt32(out int i) ? i : throw Error($"must be an integer, not {Value}");

    public bool Bool() => Value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Error($"must be true or false, not {Value}"),
    };

    /// <summary>A boolean field; absent or null reads as <paramref name="fallback"/> (HF's serde default).</summary>
    public bool Bool(string key, bool fallback) => Field(key) is { IsNull: false } child ? child.Bool() : fallback;

    /// <summary>An optional string field; absent, null and "" read as null (HF treats "" as no prefix/suffix).</summary>
    public string? OptionalString(string key) => Field(key) is { IsNull: false } child && child.String() is { Length: > 0 } s ? s : null;

    public IEnumerable<TokenizerJson> Items()
    {
        if (Value.ValueKind != JsonValueKind.Array)
        {
            throw Error($"must be an array, not {Value.ValueKind}");
        }
        string path = Path;
        string file = FilePath;
        return Value.EnumerateArray().Select((item, i) => new TokenizerJson(file, $"{path}[{i}]", item));
    }

    public IEnumerable<(string Key, TokenizerJson Value)> Properties()
    {
        if (Value.ValueKind != JsonValueKind.Object)
        {
            throw Error($"must be an object, not {Value.ValueKind}");
        }
        string file = FilePath;
        string path = Path;
        return Value.EnumerateObject().Select(p => (p.Name, new TokenizerJson(file, path.Length == 0 ? p.Name : $"{path}.{p.Name}", p.Value)));
    }

    /// <summary>The component's "type", checked against what NativeVlm implements.</summary>
    public string Type(params string[] supported)
    {
        TokenizerJson type = Required("type");
        string name = type.String();
        return supported.Contains(name)
            ? name
            : throw type.Error($"= '{name}' is not supported (supported: {string.Join(", ", supported)})");
    }
}
