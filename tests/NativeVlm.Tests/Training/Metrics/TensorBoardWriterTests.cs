using System.Net;
using System.Text.RegularExpressions;
using NativeVlm.Training.Metrics;
using Xunit;

namespace NativeVlm.Tests.Training.Metrics;

/// <summary>
/// TensorBoard event files: the CRC against published check values, the first record against bytes
/// that TensorFlow itself wrote, and every scalar read back by <see cref="TfEventFile"/>, a reader that
/// shares no code with the writer.
/// </summary>
public class TensorBoardWriterTests
{
    /// <summary>The wall time in the first record of a real TensorFlow event file (below).</summary>
    private static readonly DateTimeOffset RealFileStart = DateTimeOffset.FromUnixTimeSeconds(1599759586);

    [Fact]
    public void Crc32C_gives_the_published_check_values()
    {
        (byte[] Data, uint Crc)[] vectors =
        [
            ("123456789"u8.ToArray(), 0xE3069283),                                  // the check value of CRC-32/ISCSI (CRC-32C)
            (new byte[32], 0x8A9136AA),                                              // RFC 3720 B.4: 32 bytes of zeros
            (Enumerable.Repeat((byte)0xFF, 32).ToArray(), 0x62A8AB43),               // RFC 3720 B.4: 32 bytes of ones
            (Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(), 0x46DD794E),    // RFC 3720 B.4: 00 01 .. 1f
            (Enumerable.Range(0, 32).Select(i => (byte)(31 - i)).ToArray(), 0x113FDB5C), // RFC 3720 B.4: 1f 1e .. 00
        ];
        foreach ((byte[] data, uint crc) in vectors)
        {
            Assert.Equal(crc, Crc32C.Compute(data));
            Assert.Equal(crc, TfEventFile.Crc32C(data)); // the test reader's own CRC, checked on the same vectors
        }
    }

    [Fact]
    public void Masked_crc_is_the_one_TensorFlow_stored()
    {
        // From tensorboard/data/server/masked_crc.rs: the data of Event(file_version="CRC test, one two")
        // (key 0x1a = field 3, wire type 2; length 0x11 = 17) and the masked CRC that TensorFlow wrote after it.
        byte[] data = [0x1A, 0x11, .. "CRC test, one two"u8];
        Assert.Equal(0x5794D08Au, Crc32C.Masked(data));
        Assert.Equal(0x5794D08Au, TfEventFile.Mask(TfEventFile.Crc32C(data)));
    }

    [Fact]
    public void First_record_is_byte_for_byte_what_TensorFlow_writes()
    {
        // The first record of an event file that TensorFlow wrote, dumped with xxd in
        // tensorboard/data/server/tf_record.rs (test_success), field by field:
        byte[] expected =
        [
            0x18, 0, 0, 0, 0, 0, 0, 0,                      // uint64 length, little-endian: 24 data bytes
            0xA3, 0x7F, 0x4B, 0x22,                         // masked CRC-32C of those 8 bytes (0x224b7fa3)
            0x09,                                           // key: field 1 (wall_time) << 3 | wire type 1 (fixed64)
            0x00, 0x00, 0x80, 0x38, 0x99, 0xD6, 0xD7, 0x41, // the double 1599759586.0 (0x41d7d69938800000), little-endian
            0x1A, 0x0D,                                     // key: field 3 (file_version) << 3 | wire type 2; 13 bytes
            .. "brain.Event:2"u8,
            0x12, 0x4B, 0x36, 0xAB,                         // masked CRC-32C of the 24 data bytes (0xab364b12)
        ];
        using var dir = new TempDirectory();
        string path;
        using (var writer = new TensorBoardWriter(dir.Root, time: new ManualClock(RealFileStart)))
        {
            path = writer.FilePath;
        }
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Fact]
    public void File_is_named_as_PyTorch_names_its_event_files()
    {
        using var dir = new TempDirectory();
        var clock = new ManualClock(RealFileStart);
        using var writer = new TensorBoardWriter(dir.Root, time: clock);
        using var sameSecond = new TensorBoardWriter(dir.Root, time: clock);
        using var elsewhere = new TensorBoardWriter(dir.Root, logDirectory: dir.Path("tb"), time: clock);

        Assert.Equal(dir.Path("runs"), writer.LogDirectory);
        Assert.Equal(writer.LogDirectory, Path.GetDirectoryName(writer.FilePath));
        Assert.Matches($@"^events\.out\.tfevents\.1599759586\.{Regex.Escape(Dns.GetHostName())}\.{Environment.ProcessId}\.\d+$", Path.GetFileName(writer.FilePath));
        Assert.NotEqual(writer.FilePath, sameSecond.FilePath); // the counter at the end tells them apart
        Assert.Equal(dir.Path("tb"), Path.GetDirectoryName(elsewhere.FilePath));
    }

    [Fact]
    public void Scalars_read_back_with_their_tags_steps_values_and_wall_times()
    {
        using var dir = new TempDirectory();
        var clock = new ManualClock(RealFileStart);
        string path;
        using (var writer = new TensorBoardWriter(dir.Root, time: clock))
        {
            path = writer.FilePath;
            clock.Advance(TimeSpan.FromSeconds(1.5));
            writer.Log(0, 0, new Dictionary<string, double> { ["loss"] = 0.6931471805599453, ["rewards/accuracies"] = 0, ["epoch"] = 0 });
            clock.Advance(TimeSpan.FromSeconds(2.25));
            writer.Log(10, 0.5, new Dictionary<string, double> { ["loss"] = double.NaN, ["grad_norm"] = double.PositiveInfinity, ["learning_rate"] = 5e-7 });
            writer.Log(10, 0.5, new Dictionary<string, double> { ["eval_loss"] = 0.7, ["eval_rewards/accuracies"] = 0.9 });
            // A step past 32 bits takes a 6-byte varint.
            writer.Log(300_000_000_000, 2, new Dictionary<string, double> { ["loss"] = -1.25 });
        }

        List<TfEventFile.Event> events = TfEventFile.Read(File.ReadAllBytes(path));

        Assert.Equal(new TfEventFile.Event(1599759586, 0, "brain.Event:2", null, null), events[0]);
        // Values are float32 in the file (simple_value), hence the casts; wall times are sums of binary fractions, exact in a double.
        (double, long, string?, float?)[] expected =
        [
            (1599759587.5, 0, "train/epoch", 0f),
            (1599759587.5, 0, "train/loss", (float)0.6931471805599453),
            (1599759587.5, 0, "train/rewards/accuracies", 0f),
            (1599759589.75, 10, "train/epoch", 0.5f),
            (1599759589.75, 10, "train/loss", float.NaN),
            (1599759589.75, 10, "train/grad_norm", float.PositiveInfinity),
            (1599759589.75, 10, "train/learning_rate", (float)5e-7),
            (1599759589.75, 10, "train/epoch", 0.5f),
            (1599759589.75, 10, "eval/loss", (float)0.7),
            (1599759589.75, 10, "eval/rewards/accuracies", (float)0.9),
            (1599759589.75, 300_000_000_000, "train/epoch", 2f),
            (1599759589.75, 300_000_000_000, "train/loss", -1.25f),
        ];
        Assert.Equal(expected, events.Skip(1).Select(e => (e.WallTime, e.Step, e.Tag, e.SimpleValue)));
        Assert.All(events.Skip(1), e => Assert.Null(e.FileVersion));
    }

    [Fact]
    public void A_step_is_in_the_file_while_the_writer_is_still_open()
    {
        using var dir = new TempDirectory();
        using var writer = new TensorBoardWriter(dir.Root, time: new ManualClock(RealFileStart));
        writer.Log(1, 0.1, new Dictionary<string, double> { ["loss"] = 1 });

        byte[] file;
        using (var read = new FileStream(writer.FilePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            file = new byte[read.Length];
            read.ReadExactly(file);
        }
        Assert.Equal(["train/epoch", "train/loss"], TfEventFile.Read(file).Skip(1).Select(e => e.Tag));
    }

    [Fact]
    public void The_test_reader_rejects_a_changed_byte()
    {
        // So that the reads above mean the checksums held.
        using var dir = new TempDirectory();
        string path;
        using (var writer = new TensorBoardWriter(dir.Root, time: new ManualClock(RealFileStart)))
        {
            path = writer.FilePath;
            writer.Log(1, 0.1, new Dictionary<string, double> { ["loss"] = 1 });
        }
        byte[] file = File.ReadAllBytes(path);
        file[^5] ^= 1; // the last data byte of the last record
        var e = Assert.Throws<InvalidDataException>(() => TfEventFile.Read(file));
        Assert.StartsWith("bad masked CRC-32C of the data", e.Message);
    }
}
