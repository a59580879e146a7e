using System.Text.Json;
using NativeVlm.Training.Metrics;
using Xunit;

namespace NativeVlm.Tests.Training.Metrics;

/// <summary>
/// The event file read by programs other than this repository's: the npm package tfrecord 0.2.0
/// (TFRecord framing, checking both masked CRC-32Cs with fast-crc32c) and protobuf.js decoding each
/// record against event.proto and summary.proto as TensorFlow declares them. Skipped where Node.js is
/// not installed or npm cannot install the packages (they are fetched once into the temp folder).
/// </summary>
public class TensorBoardNodeReaderTests
{
    private const string TfRecordPackage = "tfrecord@0.2.0";
    private const string ProtobufPackage = "protobufjs@6.11.6";

    /// <summary>Prints the file's events as JSON, one object per record; a record whose CRC is wrong makes tfrecord throw.</summary>
    private const string ReaderScript = """
        const { RecordReader } = require('tfrecord/lib/record_reader');
        const protobuf = require('protobufjs');
        const root = protobuf.parse(`
          syntax = "proto3";
          package tensorflow;
          message Event {
            double wall_time = 1;
            int64 step = 2;
            oneof what { string file_version = 3; bytes graph_def = 4; Summary summary = 5; }
          }
          message Summary {
            message Value { string node_name = 7; string tag = 1; oneof value { float simple_value = 2; } }
            repeated Value value = 1;
          }`).root;
        const Event = root.lookupType('tensorflow.Event');
        (async () => {
          const reader = await RecordReader.create(process.argv[2]);
          const events = [];
          for (let record; (record = await reader.readRecord()) !== null;) {
            const e = Event.decode(record);
            const values = e.summary ? e.summary.value : [];
            events.push({
              what: e.what, wallTime: e.wallTime, step: String(e.step), fileVersion: e.fileVersion,
              values: values.map(v => ({ tag: v.tag, simpleValue: v.simpleValue })),
            });
          }
          // JSON has no NaN or Infinity: those go as strings.
          process.stdout.write(JSON.stringify(events, (k, v) => typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
        })().catch(e => { console.error(e.message); process.exit(1); });
        """;

    [SkippableFact]
    public void Npm_tfrecord_and_protobufjs_read_every_event()
    {
        string script = InstallReader();
        using var dir = new TempDirectory();
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        string path;
        using (var writer = new TensorBoardWriter(dir.Root, time: clock))
        {
            path = writer.FilePath;
            clock.Advance(TimeSpan.FromSeconds(0.5));
            writer.Log(5, 0.25, new Dictionary<string, double> { ["loss"] = 0.6931471805599453, ["grad_norm"] = double.NaN });
            writer.Log(5, 0.25, new Dictionary<string, double> { ["eval_rewards/accuracies"] = 0.875 });
        }

        (int exitCode, string stdout, string stderr) = ExternalProgram.Run("node", [script, path]);

        Assert.True(exitCode == 0, $"node exited with {exitCode}: {stderr}");
        using JsonDocument json = JsonDocument.Parse(stdout);
        var events = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(6, events.Count); // the file_version event, then one per scalar
        Assert.Equal("fileVersion", events[0].GetProperty("what").GetString());
        Assert.Equal("brain.Event:2", events[0].GetProperty("fileVersion").GetString());
        Assert.Equal(1_700_000_000, events[0].GetProperty("wallTime").GetDouble());
        // float32 values come back widened to doubles, exactly: compare with the same widening.
        (string Tag, double Value)[] expected =
        [
            ("train/epoch", 0.25f),
            ("train/loss", (float)0.6931471805599453),
            ("train/grad_norm", double.NaN),
            ("train/epoch", 0.25f),
            ("eval/rewards/accuracies", 0.875f),
        ];
        var scalars = events.Skip(1).SelectMany(e => e.GetProperty("values").EnumerateArray()
            .Select(v => (Tag: v.GetProperty("tag").GetString()!, Value: NumberOf(v.GetProperty("simpleValue"))))).ToList();
        Assert.Equal(expected, scalars);
        Assert.All(events.Skip(1), e =>
        {
            Assert.Equal("summary", e.GetProperty("what").GetString());
            Assert.Equal("5", e.GetProperty("step").GetString());
            Assert.Equal(1_700_000_000.5, e.GetProperty("wallTime").GetDouble());
        });

        // The reader does check the checksums: one changed byte and it refuses the file.
        byte[] corrupted = File.ReadAllBytes(path);
        corrupted[^5] ^= 1;
        File.WriteAllBytes(path, corrupted);
        (int corruptedExit, _, string corruptedError) = ExternalProgram.Run("node", [script, path]);
        Assert.NotEqual(0, corruptedExit);
        Assert.Contains("Incorrect record CRC32C", corruptedError);
    }

    /// <summary>A number, or the string the script wrote for NaN and the infinities.</summary>
    private static double NumberOf(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? double.Parse(value.GetString()!, System.Globalization.CultureInfo.InvariantCulture) : value.GetDouble();

    /// <summary>Installs the packages once into the temp folder (scripts off: fast-crc32c then uses its pure-JS CRC) and writes the script beside them.</summary>
    private static string InstallReader()
    {
        Skip.IfNot(ExternalProgram.OnPath("node") && ExternalProgram.OnPath("npm"), "Node.js and npm are not installed");
        string root = Path.Combine(Path.GetTempPath(), "nvlm-tfevents-node-reader");
        if (!File.Exists(Path.Combine(root, "node_modules", "tfrecord", "lib", "record_reader.js"))
            || !File.Exists(Path.Combine(root, "node_modules", "protobufjs", "package.json")))
        {
            Directory.CreateDirectory(root);
            (int exitCode, _, string stderr) = ExternalProgram.Run("npm",
                ["install", "--prefix", root, "--ignore-scripts", "--no-audit", "--no-fund", TfRecordPackage, ProtobufPackage],
                timeout: TimeSpan.FromMinutes(3));
            Skip.If(exitCode != 0, $"npm could not install {TfRecordPackage} and {ProtobufPackage}: {stderr}");
        }
        string script = Path.Combine(root, "read_tfevents.js");
        File.WriteAllText(script, ReaderScript);
        return script;
    }
}
