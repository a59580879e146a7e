using System.Buffers;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace NativeVlm.Training.Metrics;

/// <summary>
/// Appends one JSON object per <see cref="Log"/> call to <c>metrics.jsonl</c> in the output directory:
/// <c>{"step":12,"epoch":0.4,"loss":0.6931,"rewards/chosen":0.01,...}</c>, the metrics under the
/// names they were logged with (TRL's, eval ones prefixed eval_), in the order given. Each line is
/// written and flushed to the operating system at once, so a crash loses nothing logged; a resumed run
/// appends to the same file.
/// <para>
/// Numbers are invariant text: the step an integer; every other value the shortest text that reads
/// back to the same double, an integral one with ".0" as Python writes it, so that every metric reads
/// back as a float. NaN and ±infinity are the bare literals <c>NaN</c>, <c>Infinity</c> and
/// <c>-Infinity</c>: not strict JSON (RFC 8259 has no such numbers), but what Python's json.dumps
/// writes and json.loads reads back as floats, which null or a quoted string would not.
/// </para>
/// Not thread-safe: the trainer logs from one thread.
/// </summary>
public sealed class MetricsJsonlWriter : ITrainingLog, IDisposable
{
    public const string FileName = "metrics.jsonl";

    // Unescaped names keep "rewards/chosen" and non-ASCII readable; the file is never embedded in HTML.
    private static readonly JsonWriterOptions LineOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly FileStream _file;
    private readonly ArrayBufferWriter<byte> _line = new();

    public MetricsJsonlWriter(string outputDirectory)
    {
        Directory.CreateDirectory(outputDirectory);
        FilePath = Path.Combine(outputDirectory, FileName);
        // FileShare.Read: the file can be followed (tail -f, a notebook) while training runs.
        _file = new FileStream(FilePath, FileMode.Append, FileAccess.Write, FileShare.Read);
    }

    public string FilePath { get; }

    public void Log(long step, double epoch, IReadOnlyDictionary<string, double> metrics)
    {
        _line.ResetWrittenCount();
        using (var json = new Utf8JsonWriter(_line, LineOptions))
        {
            json.WriteStartObject();
            json.WriteNumber("step", step);
            WriteNumber(json, "epoch", epoch);
            foreach ((string name, double value) in metrics)
            {
                if (name is "step" or "epoch")
                {
                    continue; // The arguments, written above; TRL's logs carry the same epoch as a metric.
                }
                WriteNumber(json, name, value);
            }
            json.WriteEndObject();
        }
        _line.Write("\n"u8);
        _file.Write(_line.WrittenSpan);
        _file.Flush();
    }

    /// <summary>Nothing: the file holds metrics only, one object per logging step.</summary>
    public void Event(string message)
    {
    }

    public void Dispose() => _file.Dispose();

    /// <summary>
    /// The shortest text that reads back to the same double, with ".0" added to an integral one (as
    /// Python writes 0.0) so that json.loads gives a float for every metric, not an int for some.
    /// </summary>
    private static void WriteNumber(Utf8JsonWriter json, string name, double value)
    {
        json.WritePropertyName(name);
        if (!double.IsFinite(value))
        {
            // Python's spelling of the non-finite floats; skipInputValidation because they are not JSON.
            json.WriteRawValue(double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity", skipInputValidation: true);
            return;
        }
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        json.WriteRawValue(text.AsSpan().ContainsAny('.', 'E') ? text : text + ".0");
    }
}
