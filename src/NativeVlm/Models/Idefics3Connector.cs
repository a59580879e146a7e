using NativeVlm.Nn;
using NativeVlm.Tensors;

namespace NativeVlm.Models;

/// <summary>
/// Idefics3Connector: pixel shuffle (each scale × scale block of patches becomes one token of
/// scale² × the width) and modality_projection.proj, a bias-free Linear to the text width.
/// </summary>
public sealed class Idefics3Connector : IDisposable
{
    private readonly int _scaleFactor;

    private Idefics3Connector(Linear projection, int scaleFactor)
    {
        Projection = projection;
        _scaleFactor = scaleFactor;
    }

    /// <summary>modality_projection.proj: vision hidden · scale² → text hidden.</summary>
    public Linear Projection { get; }

    /// <param name="w">The weights under model.connector.</param>
    public static Idefics3Connector Load(Weights w, Idefics3Config config) => new(
        Linear.Load(w.Sub("modality_projection").Sub("proj"), config.ConnectorInputSize, config.Text.HiddenSize, hasBias: false),
        config.ScaleFactor);

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
        Projection.NamedParameters.Select(p => ($"modality_projection.proj.{p.Name}", p.Tensor));

    public IEnumerable<Tensor> Parameters => Projection.Parameters;

    /// <summary>
    /// [frames, patches, vision hidden] → image_hidden_states [frames, patches / scale², text hidden];
    /// traces "connector.image_hidden_states".
    /// </summary>
    public Tensor Forward(Tensor visionHidden, Trace? trace = null)
    {
        Tensor projected;
        using (visionHidden.Context.Range("connector"))
        {
            projected = Projection.Forward(Ops.PixelShuffle(visionHidden, _scaleFactor));
        }
        trace?.Invoke("connector.image_hidden_states", projected);
        return projected;
    }

    public void Dispose() => Projection.Dispose();
}
