using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Text;

namespace NativeVlm.Training.Metrics;

/// <summary>
/// Writes every logged metric as a TensorBoard scalar, in an event file that TensorBoard reads:
/// <c>events.out.tfevents.&lt;unix seconds&gt;.&lt;host&gt;.&lt;pid&gt;.&lt;n&gt;</c>, the name PyTorch's
/// SummaryWriter gives its files (TensorBoard only looks for "tfevents" in the name).
/// <para>
/// Tags are those Hugging Face's TensorBoardCallback gives TRL's logs, so that runs of both compare in
/// one TensorBoard: <c>eval_x</c> becomes <c>eval/x</c>, any other name <c>train/x</c>, and the epoch
/// argument is written as <c>train/epoch</c>.
/// </para>
/// <para>
/// Format: a sequence of TFRecords, each <c>uint64 length</c> (little-endian), <c>uint32</c> masked
/// CRC-32C of those 8 bytes, the data, <c>uint32</c> masked CRC-32C of the data. Each record's data is
/// a serialized <c>tensorflow.Event</c> (tensorflow/core/util/event.proto), encoded here by hand: the
/// first one carries <c>file_version = "brain.Event:2"</c>, then one per scalar carries wall_time,
/// step and <c>summary { value { tag, simple_value } }</c> (tensorflow/core/framework/summary.proto).
/// Every <see cref="Log"/> call is flushed to the operating system, so a crash loses nothing logged.
/// </para>
/// Not thread-safe: the trainer logs from one thread.
/// </summary>
public sealed class TensorBoardWriter : ITrainingLog, IDisposable
{
    /// <summary>Under the output directory, as transformers' default logging_dir ("runs").</summary>
    public const string DefaultSubdirectory = "runs";

    private const string FileVersion = "brain.Event:2";

    // Protobuf field keys: (field number << 3) | wire type, wire types 0 varint, 1 fixed64,
    // 2 length-delimited, 5 fixed32.
    private const byte EventWallTime = (1 << 3) | 1;      // Event.wall_time, double
    private const byte EventStep = (2 << 3) | 0;          // Event.step, int64
    private const byte EventFileVersion = (3 << 3) | 2;   // Event.file_version, string
    private const byte EventSummary = (5 << 3) | 2;       // Event.summary, Summary
    private const byte SummaryValue = (1 << 3) | 2;       // Summary.value, repeated Summary.Value
    private const byte ValueTag = (1 << 3) | 2;           // Summary.Value.tag, string
    private const byte ValueSimpleValue = (2 << 3) | 5;   // Summary.Value.simple_value, float

    /// <summary>Numbers the files this process opens, so that two writers in one second get two names.</summary>
    private static int s_filesOpened;

    private readonly FileStream _file;
    private readonly TimeProvider _time;

    /// <param name="outputDirectory">The run's output directory; the file goes to its "runs" folder unless <paramref name="logDirectory"/> is given.</param>
    /// <param name="logDirectory">Where to put the event file instead (created if missing).</param>
    /// <param name="time">The clock of wall_time and of the file name (tests pass a fixed one).</param>
    public TensorBoardWriter(string outputDirectory, string? logDirectory = null, TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        LogDirectory = logDirectory ?? Path.Combine(outputDirectory, DefaultSubdirectory);
        Directory.CreateDirectory(LogDirectory);
        string name = string.Create(CultureInfo.InvariantCulture,
            $"events.out.tfevents.{_time.GetUtcNow().ToUnixTimeSeconds()}.{Dns.GetHostName()}.{Environment.ProcessId}.{Interlocked.Increment(ref s_filesOpened) - 1}");
        FilePath = Path.Combine(LogDirectory, name);
        // CreateNew: an existing file of that name is never overwritten. FileShare.Read: TensorBoard reads while training runs.
        _file = new FileStream(FilePath, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
        var first = new ProtoBuffer();
        first.WriteDouble(EventWallTime, WallTime());
        first.WriteString(EventFileVersion, FileVersion);
        WriteRecord(first.ToArray());
        _file.Flush();
    }

    /// <summary>The folder to give <c>tensorboard --logdir</c>.</summary>
    public string LogDirectory { get; }

    public string FilePath { get; }

    public void Log(long step, double epoch, IReadOnlyDictionary<string, double> metrics)
    {
        double wallTime = WallTime();
        WriteScalar(wallTime, step, "train/epoch", epoch);
        foreach ((string name, double value) in metrics)
        {
            if (name == "epoch")
            {
                continue; // The same number as the epoch argument in TRL's logs; written once, above.
            }
            WriteScalar(wallTime, step, TagOf(name), value);
        }
        _file.Flush();
    }

    /// <summary>Nothing: TensorBoard shows no plain messages (Event.log_message is deprecated and not displayed).</summary>
    public void Event(string message)
    {
    }

    public void Dispose() => _file.Dispose();

    private static string TagOf(string metric) =>
        metric.StartsWith("eval_", StringComparison.Ordinal) ? "eval/" + metric["eval_".Length..] : "train/" + metric;

    /// <summary>Seconds since the Unix epoch, as Python's time.time() gives TensorFlow and PyTorch.</summary>
    private double WallTime() => (_time.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks / (double)TimeSpan.TicksPerSecond;

    private void WriteScalar(double wallTime, long step, string tag, double value)
    {
        var summaryValue = new ProtoBuffer();
        summaryValue.WriteString(ValueTag, tag);
        // Always written, 0 included: simple_value sits in a oneof, which proto3 serializes whenever set.
        summaryValue.WriteFloat(ValueSimpleValue, (float)value);
        var summary = new ProtoBuffer();
        summary.WriteBytes(SummaryValue, summaryValue.ToArray());
        var e = new ProtoBuffer();
        e.WriteDouble(EventWallTime, wallTime);
        if (step != 0)
        {
            e.WriteVarint(EventStep, (ulong)step); // proto3 leaves out a field at its default value, as here step 0
        }
        e.WriteBytes(EventSummary, summary.ToArray());
        WriteRecord(e.ToArray());
    }

    private void WriteRecord(byte[] data)
    {
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], Crc32C.Masked(header[..8]));
        Span<byte> footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(footer, Crc32C.Masked(data));
        _file.Write(header);
        _file.Write(data);
        _file.Write(footer);
    }

    /// <summary>The protobuf wire format for the few field types an Event needs.</summary>
    private sealed class ProtoBuffer
    {
        private readonly MemoryStream _bytes = new();

        public void WriteDouble(byte key, double value)
        {
            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteDoubleLittleEndian(bytes, value);
            _bytes.WriteByte(key);
            _bytes.Write(bytes);
        }

        public void WriteFloat(byte key, float value)
        {
            Span<byte> bytes = stackalloc byte[4];
            BinaryPrimitives.WriteSingleLittleEndian(bytes, value);
            _bytes.WriteByte(key);
            _bytes.Write(bytes);
        }

        /// <summary>An int64 field takes the value's two's complement as an unsigned varint (10 bytes when negative).</summary>
        public void WriteVarint(byte key, ulong value)
        {
            _bytes.WriteByte(key);
            WriteRawVarint(value);
        }

        public void WriteString(byte key, string value) => WriteBytes(key, Encoding.UTF8.GetBytes(value));

        public void WriteBytes(byte key, byte[] value)
        {
            _bytes.WriteByte(key);
            WriteRawVarint((ulong)value.Length);
            _bytes.Write(value);
        }

        public byte[] ToArray() => _bytes.ToArray();

        /// <summary>Seven bits a byte, least significant group first, the high bit set on all but the last.</summary>
        private void WriteRawVarint(ulong value)
        {
            while (value >= 0x80)
            {
                _bytes.WriteByte((byte)(value | 0x80));
                value >>= 7;
            }
            _bytes.WriteByte((byte)value);
        }
    }
}
