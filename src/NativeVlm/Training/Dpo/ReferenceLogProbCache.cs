using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using NativeVlm.Batches;
using NativeVlm.Models;
using NativeVlm.Quantization;
using NativeVlm.Tensors;

namespace NativeVlm.Training.Dpo;

/// <summary>
/// --precompute_ref_log_probs: the reference model's summed completion log-probs of every pair, computed
/// once before training and kept on disk for later epochs and later runs. The reference is the base model
/// with the adapters off, so an entry depends on the base model (<see cref="ModelIdentity"/>: one file per
/// identity) and on the pair's content (<see cref="PairKeys"/>: one line per pair), never on the adapters.
/// The file is <c>&lt;directory&gt;/&lt;model identity&gt;.jsonl</c>, one line per pair:
/// <c>{"pair": key, "chosen": Σ log p, "rejected": Σ log p}</c>, numbers written so they read back bit for bit.
/// Lines are appended as they are computed, so an interrupted precompute keeps its work; a torn last line
/// is ignored and replaced. Each pair is computed alone (a batch of one), so batches of one pair train on exactly the
/// values the reference model gives them during training.
/// </summary>
public sealed class ReferenceLogProbCache
{
    /// <summary>The cache's folder under output_dir when ref_log_probs_dir is not given.</summary>
    public const string DefaultDirectoryName = "ref_logps";

    private readonly Dictionary<string, (double Chosen, double Rejected)> _entries;

    /// <summary>The file's bytes up to its last newline: those of whole entries.</summary>
    private long _completeLength;

    private ReferenceLogProbCache(string filePath, Dictionary<string, (double, double)> entries, long completeLength)
    {
        FilePath = filePath;
        _entries = entries;
        _completeLength = completeLength;
    }

    public string FilePath { get; }

    /// <summary>Pairs <see cref="Precompute"/> ran the reference model for (in this process).</summary>
    public int Computed { get; private set; }

    /// <summary>Pairs <see cref="Precompute"/> found already cached (in this process).</summary>
    public int Reused { get; private set; }

    /// <summary>The cache of <paramref name="modelIdentity"/> in <paramref name="directory"/> (created when missing).</summary>
    public static ReferenceLogProbCache Open(string directory, string modelIdentity)
    {
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, modelIdentity + ".jsonl");
        var entries = new Dictionary<string, (double, double)>(StringComparer.Ordinal);
        byte[] file = File.Exists(path) ? File.ReadAllBytes(path) : [];
        // Whole lines only: what follows the last newline is a line torn by a run that stopped while
        // writing it; Precompute cuts it off and computes that pair again.
        int complete = Array.LastIndexOf(file, (byte)'\n') + 1;
        string[] lines = Encoding.UTF8.GetString(file, 0, complete).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < lines.Length; i++)
        {
            try
            {
                JsonObject entry = JsonNode.Parse(lines[i])!.AsObject();
                entries[entry["pair"]!.GetValue<string>()] = (Number(entry["chosen"]!), Number(entry["rejected"]!));
            }
            catch (Exception e) when (e is JsonException or NullReferenceException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{path}, line {i + 1}: not a reference log-prob entry ({e.Message})");
            }
        }
        return new ReferenceLogProbCache(path, entries, complete);
    }

    /// <summary>
    /// What the reference log-probs of a snapshot depend on, as a file name: config.json, every
    /// *.safetensors file's name, size and header (tensor names, dtypes, shapes, offsets — not the data,
    /// which would mean reading gigabytes), the base weights' quantisation and the backend (CPU and CUDA
    /// round differently).
    /// </summary>
    public static string ModelIdentity(string snapshot, BaseWeightQuantization quantization, DeviceKind backend)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string text) => hash.AppendData(Encoding.UTF8.GetBytes(text + "\n"));
        Text($"quantization={quantization}; backend={backend}");
        hash.AppendData(File.ReadAllBytes(Path.Combine(snapshot, "config.json")));
        var lengthBytes = new byte[8];
        foreach (string file in Directory.GetFiles(snapshot, "*.safetensors").Order(StringComparer.Ordinal))
        {
            using FileStream stream = File.OpenRead(file);
            stream.ReadExactly(lengthBytes);
            ulong headerLength = BitConverter.ToUInt64(lengthBytes);
            if (headerLength > (ulong)stream.Length - 8)
            {
                throw new InvalidDataException($"{file}: header length {headerLength} exceeds the file ({stream.Length} bytes)");
            }
            var header = new byte[headerLength];
            stream.ReadExactly(header);
            Text($"{Path.GetFileName(file)} {stream.Length}");
            hash.AppendData(header);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset()[..16]);
    }

    /// <summary>
    /// Each pair's content key: SHA-256 of its prompt, chosen and rejected token ids (without padding) and of
    /// its images (each real frame's attended pixels and mask, without the batch's padding), so a pair has
    /// the same key alone and in any batch.
    /// </summary>
    public static string[] PairKeys(DpoBatch batch)
    {
        var keys = new string[batch.Batch];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int p = 0; p < batch.Batch; p++)
        {
            AppendTokens(hash, batch.PromptIds, batch.PromptAttentionMask, p, batch.PromptLength);
            AppendTokens(hash, batch.ChosenIds, batch.ChosenAttentionMask, p, batch.ChosenLength);
            AppendTokens(hash, batch.RejectedIds, batch.RejectedAttentionMask, p, batch.RejectedLength);
            AppendFrames(hash, batch.ModelInputs, p);
            keys[p] = Convert.ToHexStringLower(hash.GetHashAndReset());
        }
        return keys;
    }

    /// <summary>
    /// Caches every sample of <paramref name="data"/> not cached yet, each collated alone and given to
    /// <paramref name="reference"/> (the reference model: adapters off, no gradient).
    /// </summary>
    public void Precompute(ITrainingData<DpoBatch> data, Func<DpoBatch, DpoReferenceLogProbs> reference)
    {
        using var writer = new StreamWriter(File.Open(FilePath, FileMode.OpenOrCreate, FileAccess.Write), new UTF8Encoding(false));
        writer.BaseStream.SetLength(_completeLength);
        writer.BaseStream.Seek(0, SeekOrigin.End);
        for (int i = 0; i < data.Count; i++)
        {
            DpoBatch batch = data.Collate([i]);
            string key = PairKeys(batch).Single();
            if (_entries.ContainsKey(key))
            {
                Reused++;
                continue;
            }
            DpoReferenceLogProbs computed = reference(batch);
            (double chosen, double rejected) = (computed.Chosen.Single(), computed.Rejected.Single());
            _entries[key] = (chosen, rejected);
            Computed++;
            writer.Write($"{{\"pair\":\"{key}\",\"chosen\":{Json(chosen)},\"rejected\":{Json(rejected)}}}\n");
            writer.Flush();
            _completeLength = writer.BaseStream.Length;
        }
    }

    /// <summary>The cached reference log-probs of <paramref name="batch"/>'s pairs; a pair not cached is an error.</summary>
    public DpoReferenceLogProbs Lookup(DpoBatch batch)
    {
        string[] keys = PairKeys(batch);
        var chosen = new double[keys.Length];
        var rejected = new double[keys.Length];
        for (int p = 0; p < keys.Length; p++)
        {
            if (!_entries.TryGetValue(keys[p], out (double Chosen, double Rejected) entry))
            {
                throw new InvalidOperationException($"pair {p} of the batch has no precomputed reference log-probs in {FilePath}: precompute its split first");
            }
            (chosen[p], rejected[p]) = entry;
        }
        return new DpoReferenceLogProbs(chosen, rejected);
    }

    /// <summary>A finite number as the shortest text that parses back to the same double; ±Infinity and NaN as strings (JSON has no such numbers).</summary>
    private static string Json(double value) =>
        double.IsFinite(value) ? value.ToString("R", CultureInfo.InvariantCulture) : $"\"{value.ToString(CultureInfo.InvariantCulture)}\"";

    private static double Number(JsonNode node) =>
        node.GetValueKind() == JsonValueKind.String
            ? double.Parse(node.GetValue<string>(), NumberStyles.Float, CultureInfo.InvariantCulture)
            : node.GetValue<double>();

    /// <summary>Row <paramref name="pair"/>'s tokens where its attention mask is 1, after their count.</summary>
    private static void AppendTokens(IncrementalHash hash, int[] ids, byte[] mask, int pair, int length)
    {
        int[] tokens = Enumerable.Range(pair * length, length).Where(i => mask[i] != 0).Select(i => ids[i]).ToArray();
        hash.AppendData(BitConverter.GetBytes(tokens.Length));
        hash.AppendData(MemoryMarshal.AsBytes(tokens.AsSpan()));
    }

    /// <summary>
    /// Model row <paramref name="row"/>'s real frames (slots whose mask is not all zero): each frame's extent
    /// (the rows and columns up to its last attended pixel), then its mask and its three channels within that
    /// extent. The batch pads frames with zeros (mask 0) at the bottom and right, outside every extent.
    /// </summary>
    private static void AppendFrames(IncrementalHash hash, Idefics3Inputs inputs, int row)
    {
        if (inputs.PixelValues is not { } values)
        {
            return;
        }
        int[] shape = inputs.PixelShape!;
        int slots = shape[1], height = shape[3], width = shape[4], plane = height * width;
        for (int s = 0; s < slots; s++)
        {
            int slot = row * slots + s;
            ReadOnlySpan<byte> mask = inputs.PixelAttentionMask.AsSpan(slot * plane, plane);
            int extentHeight = 0, extentWidth = 0;
            for (int y = 0; y < height; y++)
            {
                int last = mask.Slice(y * width, width).LastIndexOfAnyExcept((byte)0);
                if (last >= 0)
                {
                    extentHeight = y + 1;
                    extentWidth = Math.Max(extentWidth, last + 1);
                }
            }
            if (extentHeight == 0)
            {
                continue;
            }
            hash.AppendData(BitConverter.GetBytes(extentHeight));
            hash.AppendData(BitConverter.GetBytes(extentWidth));
            for (int y = 0; y < extentHeight; y++)
            {
                hash.AppendData(mask.Slice(y * width, extentWidth));
            }
            for (int c = 0; c < 3; c++)
            {
                for (int y = 0; y < extentHeight; y++)
                {
                    hash.AppendData(MemoryMarshal.AsBytes(values.AsSpan(((slot * 3 + c) * plane) + y * width, extentWidth)));
                }
            }
        }
    }
}
