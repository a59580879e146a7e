using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace NativeVlm.Adapters;

/// <summary>
/// JSON text exactly as Python's <c>json.dumps(obj, indent=2, sort_keys=True)</c> writes it, which
/// is how PEFT writes adapter_config.json: two-space indent, <c>"key": value</c>, keys sorted by code
/// point, empty containers as <c>{}</c> and <c>[]</c>, non-ASCII escaped as \uXXXX, floats in
/// Python's repr. A number read from a file is written back with its own digits, so a file Python
/// wrote comes out byte for byte.
/// </summary>
internal static class PythonJson
{
    public static string Serialize(JsonNode? node)
    {
        var text = new StringBuilder();
        Write(text, node, 0);
        return text.ToString();
    }

    private static void Write(StringBuilder text, JsonNode? node, int depth)
    {
        switch (node)
        {
            case null:
                text.Append("null");
                break;
            case JsonObject obj when obj.Count == 0:
                text.Append("{}");
                break;
            case JsonObject obj:
                text.Append('{');
                bool firstField = true;
                foreach (KeyValuePair<string, JsonNode?> field in obj.OrderBy(f => f.Key, StringComparer.Ordinal))
                {
                    text.Append(firstField ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
                    AppendString(text, field.Key);
                    text.Append(": ");
                    Write(text, field.Value, depth + 1);
                    firstField = false;
                }
                text.Append('\n').Append(' ', 2 * depth).Append('}');
                break;
            case JsonArray array when array.Count == 0:
                text.Append("[]");
                break;
            case JsonArray array:
                text.Append('[');
                for (int i = 0; i < array.Count; i++)
                {
                    text.Append(i == 0 ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
                    Write(text, array[i], depth + 1);
                }
                text.Append('\n').Append(' ', 2 * depth).Append(']');
                break;
            case JsonValue value:
                AppendValue(text, value);
                break;
            default:
                throw new ArgumentException($"unexpected JSON node {node.GetType().Name}");
        }
    }

    private static void AppendValue(StringBuilder text, JsonValue value)
    {
        if (value.TryGetValue(out JsonElement element))
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.String: AppendString(text, element.GetString()!); return;
                case JsonValueKind.Number: text.Append(element.GetRawText()); return;
                case JsonValueKind.True: text.Append("true"); return;
                case JsonValueKind.False: text.Append("false"); return;
                case JsonValueKind.Null: text.Append("null"); return;
            }
        }
        else if (value.TryGetValue(out string? s))
        {
            AppendString(text, s);
            return;
        }
        else if (value.TryGetValue(out bool b))
        {
            text.Append(b ? "true" : "false");
            return;
        }
        else if (value.TryGetValue(out int i))
        {
            text.Append(i.ToString(CultureInfo.InvariantCulture));
            return;
        }
        else if (value.TryGetValue(out long l))
        {
            text.Append(l.ToString(CultureInfo.InvariantCulture));
            return;
        }
        else if (value.TryGetValue(out double d))
        {
            text.Append(FloatRepr(d));
            return;
        }
        throw new ArgumentException($"JSON value {value.ToJsonString()} has no Python form here");
    }

    /// <summary>json.dumps' string: ASCII only, with \" \\ \n \r \t \b \f and \uXXXX (UTF-16 units) for the rest.</summary>
    private static void AppendString(StringBuilder text, string value)
    {
        text.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                case < ' ' or > '~': text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: text.Append(c); break;
            }
        }
        text.Append('"');
    }

    /// <summary>
    /// Python's repr of a float: the shortest digits that read back as the same double, in
    /// positional form with at least one decimal ("0.1", "8.0", "0.0001") when the decimal exponent
    /// is in [-4, 16), else as "1e-05" / "1.5e+16"; json.dumps spells the non-finite ones NaN, Infinity.
    /// </summary>
    internal static string FloatRepr(double value)
    {
        if (double.IsNaN(value))
        {
            return "NaN";
        }
        if (double.IsInfinity(value))
        {
            return value > 0 ? "Infinity" : "-Infinity";
        }
        if (value == 0)
        {
            return double.IsNegative(value) ? "-0.0" : "0.0";
        }
        // "R" gives the shortest round-trip digits, as d.dddE±x or positional; normalise to
        // digits (no leading or trailing zeros) and the exponent of the first digit.
        string shortest = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        int e = shortest.IndexOfAny(['E', 'e']);
        string mantissa = e < 0 ? shortest : shortest[..e];
        int exponent = e < 0 ? 0 : int.Parse(shortest[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        int point = mantissa.IndexOf('.');
        string allDigits = mantissa.Replace(".", "");
        int pointPosition = (point < 0 ? mantissa.Length : point) + exponent; // digits before the decimal point
        int leadingZeros = allDigits.Length - allDigits.TrimStart('0').Length;
        string digits = allDigits.Trim('0');
        int firstDigitExponent = pointPosition - leadingZeros - 1; // value = d.ddd × 10^firstDigitExponent

        var repr = new StringBuilder(value < 0 ? "-" : "");
        if (firstDigitExponent < -4 || firstDigitExponent >= 16)
        {
            repr.Append(digits[0]);
            if (digits.Length > 1)
            {
                repr.Append('.').Append(digits, 1, digits.Length - 1);
            }
            repr.Append('e').Append(firstDigitExponent < 0 ? '-' : '+')
                .Append(Math.Abs(firstDigitExponent).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (firstDigitExponent < 0)
        {
            repr.Append("0.").Append('0', -firstDigitExponent - 1).Append(digits);
        }
        else
        {
            int integerDigits = firstDigitExponent + 1;
            string padded = digits.PadRight(integerDigits, '0');
            repr.Append(padded, 0, integerDigits).Append('.');
            repr.Append(padded.Length > integerDigits ? padded[integerDigits..] : "0");
        }
        return repr.ToString();
    }
}
