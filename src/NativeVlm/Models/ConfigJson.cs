using System.Globalization;
using System.Text.Json;

namespace NativeVlm.Models;

/// <summary>
/// One object of a config.json with its JSON path, read the way transformers' config classes take
/// their arguments: an absent field takes the caller's default, a JSON null is Python's None (allowed
/// only where the HF field may be None), a value of the wrong type is an error naming the field.
/// An absent section reads as an object with every field absent.
/// </summary>
internal readonly struct ConfigJson
{
    private readonly JsonElement? _object;

    private ConfigJson(string filePath, string path, JsonElement? obj)
    {
        FilePath = filePath;
        Path = path;
        _object = obj;
    }

    public string FilePath { get; }

    /// <summary>"" for the root, "text_config" for a section.</summary>
    public string Path { get; }

    /// <summary>The section is in the file (not absent, not null).</summary>
    public bool Exists => _object.HasValue;

    public static ConfigJson Root(string filePath, JsonElement root) =>
        root.ValueKind == JsonValueKind.Object
            ? new ConfigJson(filePath, "", root)
            : throw new ConfigException(filePath, "", $"{filePath}: the file holds a JSON {root.ValueKind}, not an object");

    public string FieldPath(string key) => Path.Length == 0 ? key : $"{Path}.{key}";

    /// <summary>A nested object; absent or null reads as an empty section (HF builds the sub-config from its defaults).</summary>
    public ConfigJson Section(string key)
    {
        JsonElement? value = Value(key);
        if (value is { ValueKind: not JsonValueKind.Object })
        {
            throw Invalid(key, value.Value, "must be an object");
        }
        return new ConfigJson(FilePath, FieldPath(key), value);
    }

    /// <summary>The field's JSON value; null when absent or JSON null.</summary>
    public JsonElement? Value(string key) =>
        _object is { } obj && obj.TryGetProperty(key, out JsonElement value) && value.ValueKind != JsonValueKind.Null
            ? value
            : null;

    public bool IsAbsent(string key) => _object is not { } obj || !obj.TryGetProperty(key, out _);

    public int Int(string key, int fallback) =>
        NullableInt(key, fallback) ?? throw Invalid(key, "null", "must be an integer");

    public int PositiveInt(string key, int fallback)
    {
        int value = Int(key, fallback);
        return value > 0 ? value : throw Invalid(key, Format(value), "must be positive");
    }

    /// <summary>Absent → <paramref name="fallback"/>; JSON null → null (Python's None).</summary>
    public int? NullableInt(string key, int? fallback)
    {
        if (IsAbsent(key))
        {
            return fallback;
        }
        return Value(key) is { } value ? ToInt(key, value) : null;
    }

    public int? NullablePositiveInt(string key, int? fallback)
    {
        int? value = NullableInt(key, fallback);
        return value is null or > 0 ? value : throw Invalid(key, Format(value.Value), "must be positive");
    }

    public double PositiveDouble(string key, double fallback)
    {
        if (IsAbsent(key))
        {
            return fallback;
        }
        JsonElement value = Value(key) ?? throw Invalid(key, "null", "must be a number");
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double number))
        {
            throw Invalid(key, value, "must be a number");
        }
        return number > 0 ? number : throw Invalid(key, value, "must be positive");
    }

    public double Double(string key, double fallback)
    {
        if (IsAbsent(key))
        {
            return fallback;
        }
        JsonElement value = Value(key) ?? throw Invalid(key, "null", "must be a number");
        return value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double number)
            ? number
            : throw Invalid(key, value, "must be a number");
    }

    public bool Bool(string key, bool fallback)
    {
        if (IsAbsent(key))
        {
            return fallback;
        }
        JsonElement value = Value(key) ?? throw Invalid(key, "null", "must be true or false");
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Invalid(key, value, "must be true or false"),
        };
    }

    public string String(string key, string fallback)
    {
        if (IsAbsent(key))
        {
            return fallback;
        }
        JsonElement value = Value(key) ?? throw Invalid(key, "null", "must be a string");
        return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Invalid(key, value, "must be a string");
    }

    /// <summary>An integer or a list of integers (eos_token_id may be either); null → empty.</summary>
    public IReadOnlyList<int> IntList(string key, IReadOnlyList<int> fallback)
    {
        if (IsAbsent(key))
        {
            return fallback;
        }
        if (Value(key) is not { } value)
        {
            return [];
        }
        if (value.ValueKind != JsonValueKind.Array)
        {
            return [ToInt(key, value)];
        }
        ConfigJson section = this;
        return value.EnumerateArray().Select(item => section.ToInt(key, item)).ToArray();
    }

    /// <summary>"{file}: {path} = {value} is not supported (expected {expected})".</summary>
    public ConfigException Unsupported(string key, string value, string expected) =>
        new(FilePath, FieldPath(key), $"{FilePath}: {FieldPath(key)} = {value} is not supported (expected {expected})");

    public ConfigException Unsupported(string key, JsonElement value, string expected) => Unsupported(key, Format(value), expected);

    /// <summary>"{file}: {path} = {value} {rule}", for values that no config could mean.</summary>
    public ConfigException Invalid(string key, string value, string rule) =>
        new(FilePath, FieldPath(key), $"{FilePath}: {FieldPath(key)} = {value} {rule}");

    public ConfigException Invalid(string key, JsonElement value, string rule) => Invalid(key, Format(value), rule);

    /// <summary>Strings in single quotes, everything else as its JSON text.</summary>
    public static string Format(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? Format(value.GetString()!) : value.GetRawText();

    public static string Format(string value) => $"'{value}'";

    public static string Format(long value) => value.ToString(CultureInfo.InvariantCulture);

    public static string Format(bool value) => value ? "true" : "false";

    private int ToInt(string key, JsonElement value) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int number)
            ? number
            : throw Invalid(key, value, "must be an integer");
}
