using System.Globalization;
using System.Text;

namespace NativeVlm.Text.Jinja;

/// <summary>
/// The tojson filter as transformers defines it: Python's json.dumps(value, ensure_ascii=False,
/// indent=indent, sort_keys=sort_keys) — ", " and ": " separators, or "," and newlines when indented.
/// </summary>
internal static class Json
{
    public static string Dumps(object? value, int? indent, bool sortKeys)
    {
        var output = new StringBuilder();
        Write(value, indent, sortKeys, 0, output);
        return output.ToString();
    }

    private static void Write(object? value, int? indent, bool sortKeys, int depth, StringBuilder output)
    {
        switch (value)
        {
            case null:
                output.Append("null");
                break;
            case bool b:
                output.Append(b ? "true" : "false");
                break;
            case long l:
                output.Append(l.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                output.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : Py.FloatRepr(d));
                break;
            case string s:
                WriteString(s, output);
                break;
            case List<object?> list:
                WriteContainer('[', ']', list, indent, depth, output, (item, o) => Write(item, indent, sortKeys, depth + 1, o));
                break;
            case OrderedDictionary<string, object?> dict:
                IEnumerable<KeyValuePair<string, object?>> pairs = sortKeys ? dict.OrderBy(p => p.Key, StringComparer.Ordinal) : dict;
                WriteContainer('{', '}', pairs.ToList(), indent, depth, output, (pair, o) =>
                {
                    WriteString(pair.Key, o);
                    o.Append(": ");
                    Write(pair.Value, indent, sortKeys, depth + 1, o);
                });
                break;
            default:
                throw new PyException($"Object of type {Py.TypeName(value)} is not JSON serializable");
        }
    }

    private static void WriteContainer<T>(char open, char close, List<T> items, int? indent, int depth, StringBuilder output, Action<T, StringBuilder> writeItem)
    {
        output.Append(open);
        if (items.Count == 0)
        {
            output.Append(close);
            return;
        }
        string separator = indent is null ? ", " : ",";
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0)
            {
                output.Append(separator);
            }
            if (indent is int step)
            {
                output.Append('\n').Append(' ', step * (depth + 1));
            }
            writeItem(items[i], output);
        }
        if (indent is int width)
        {
            output.Append('\n').Append(' ', width * depth);
        }
        output.Append(close);
    }

    private static void WriteString(string s, StringBuilder output)
    {
        output.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': output.Append("\\\""); break;
                case '\\': output.Append("\\\\"); break;
                case '\n': output.Append("\\n"); break;
                case '\r': output.Append("\\r"); break;
                case '\t': output.Append("\\t"); break;
                case '\b': output.Append("\\b"); break;
                case '\f': output.Append("\\f"); break;
                default:
                    if (c < 0x20)
                    {
                        output.Append($"\\u{(int)c:x4}");
                    }
                    else
                    {
                        output.Append(c);
                    }
                    break;
            }
        }
        output.Append('"');
    }
}
